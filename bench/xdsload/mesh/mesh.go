package mesh

import (
	"fmt"
	"strings"
)

// Namespace holds every resource of the bench mesh and its proxies.
const Namespace = "bench"

// Services is the ServiceEntries svc-FROM to svc-(TO-1) as one YAML stream:
// host svc-I.bench.svc.cluster.local, a VIP in 240.0.0.0/4, HTTP port 80
// and two STATIC endpoints labelled version v1 and v2.
func Services(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%d, namespace: %s}
spec:
  hosts: [svc-%d.%s.svc.cluster.local]
  addresses: [240.%d.%d.%d]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.%d.%d.1, ports: {http: 8080}, labels: {version: v1}}
  - {address: 10.%d.%d.2, ports: {http: 8080}, labels: {version: v2}}
---
`, i, Namespace, i, Namespace, 1+i/65536, (i/256)%256, i%256, 1+i/256, i%256, 1+i/256, i%256)
	}
	return b.String()
}

// DestinationRule gives svc-0 the subsets v1 and v2.
func DestinationRule() string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-0, namespace: %s}
spec:
  host: svc-0.%s.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, Namespace, Namespace)
}

// VirtualService splits svc-0's traffic: weight w1 to v1, the rest to v2.
// The bench edits it to make every proxy's route configuration change.
func VirtualService(w1 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-0, namespace: %s}
spec:
  hosts: [svc-0.%s.svc.cluster.local]
  http:
  - route:
    - {destination: {host: svc-0.%s.svc.cluster.local, subset: v1}, weight: %d}
    - {destination: {host: svc-0.%s.svc.cluster.local, subset: v2}, weight: %d}
`, Namespace, Namespace, Namespace, w1, Namespace, 100-w1)
}
