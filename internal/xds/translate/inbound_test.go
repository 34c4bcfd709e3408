package translate

import (
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
)

// TestSidecarIngressNamesTheServices: a Sidecar ingress port that is an
// endpoint port of the workload's service gets that service in its
// inbound cluster's istio metadata (what the destination reports as
// destination_service), as Istio matches ingress listeners to service
// instances by endpoint port; a port no service targets gets none.
func TestSidecarIngressNamesTheServices(t *testing.T) {
	res, err := config.Parse([]byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker-service, namespace: default}
spec:
  hosts: [worker-service.default.svc.cluster.local]
  addresses: [10.96.3.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8081}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-deployment, namespace: default}
spec: {address: 10.0.3.1, labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: worker, namespace: default}
spec:
  workloadSelector: {labels: {app: worker}}
  ingress:
  - port: {number: 8081, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:9081
  - port: {number: 9000, protocol: HTTP, name: http-admin}
    defaultEndpoint: 127.0.0.1:9000
`), "in.yaml")
	if err != nil || len(res.Errors) > 0 {
		t.Fatal(err, res.Errors)
	}
	cfg := config.NewSnapshot(res.Resources)
	mesh := DefaultMesh()
	p, err := ProxyFromNode(proxySpec{ID: "sidecar~10.0.3.1~worker-deployment-1.default~default.svc.cluster.local", Labels: map[string]string{"app": "worker"}}.node())
	if err != nil {
		t.Fatal(err)
	}
	_, clusters := newScope(Input{Proxy: p, Config: cfg, Registry: serviceentry.Build(cfg, mesh.DomainSuffix), Mesh: mesh}).sidecarInbound()
	services := map[string]string{}
	for _, c := range clusters {
		svcs := c.GetMetadata().GetFilterMetadata()["istio"].GetFields()["services"].GetListValue().GetValues()
		if len(svcs) > 0 {
			services[c.GetName()] = svcs[0].GetStructValue().GetFields()["host"].GetStringValue()
		} else {
			services[c.GetName()] = ""
		}
	}
	if got := services[InboundClusterName(8081)]; got != "worker-service.default.svc.cluster.local" {
		t.Errorf("inbound|8081|| services: got %q, want worker-service.default.svc.cluster.local (all: %v)", got, services)
	}
	if got, ok := services[InboundClusterName(9000)]; !ok || got != "" {
		t.Errorf("inbound|9000|| services: got %q (present %v), want a cluster without services", got, ok)
	}
}
