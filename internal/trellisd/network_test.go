package trellisd

import (
	"path/filepath"
	"testing"
	"time"
)

const networkWorker = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker, namespace: default}
spec:
  hosts: [worker.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-burst, namespace: default}
spec: {address: 10.187.0.5, labels: {app: worker}, network: network2}
`

const networkGateway = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: eastwest, namespace: istio-system, labels: {topology.istio.io/network: network2}}
spec:
  hosts: [eastwest.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 15443, name: tls, protocol: TLS}]
  workloadSelector: {labels: {istio: eastwestgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: eastwest, namespace: istio-system}
spec: {address: 10.186.0.200, labels: {istio: eastwestgateway}, network: network2}
`

// trellisd logs a network whose endpoints have no east-west gateway (the
// other networks' proxies are not sent them), and logs again once one
// appears.
func TestLogsNetworkWithoutGateway(t *testing.T) {
	dir := t.TempDir()
	writeAtomic(t, filepath.Join(dir, "worker.yaml"), networkWorker)
	rec := &logRecorder{t: t}
	startTrellisd(t, Options{ConfigDir: dir, Logf: rec.logf, Debounce: 10 * time.Millisecond})
	wait := func(sub string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !rec.has(sub); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line containing %q", sub)
			}
		}
	}
	wait("no east-west gateway known for network network2 (1 endpoints)")
	writeAtomic(t, filepath.Join(dir, "gateway.yaml"), networkGateway)
	wait("every network with endpoints has an east-west gateway")
}
