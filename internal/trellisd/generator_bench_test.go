package trellisd

import (
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// scaleState is the xdsload bench's mesh: n ServiceEntry services (HTTP
// port 80, two endpoints each), a DestinationRule with two subsets and a
// VirtualService splitting between them with weight w1 for v1.
func scaleState(b *testing.B, version uint64, n, w1 int) *state {
	b.Helper()
	var y strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%d, namespace: bench}
spec:
  hosts: [svc-%d.bench.svc.cluster.local]
  addresses: [240.%d.%d.%d]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.%d.%d.1, ports: {http: 8080}, labels: {version: v1}}
  - {address: 10.%d.%d.2, ports: {http: 8080}, labels: {version: v2}}
---
`, i, i, 1+i/65536, (i/256)%256, i%256, 1+i/256, i%256, 1+i/256, i%256)
	}
	fmt.Fprintf(&y, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-0, namespace: bench}
spec:
  host: svc-0.bench.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-0, namespace: bench}
spec:
  hosts: [svc-0.bench.svc.cluster.local]
  http:
  - route:
    - {destination: {host: svc-0.bench.svc.cluster.local, subset: v1}, weight: %d}
    - {destination: {host: svc-0.bench.svc.cluster.local, subset: v2}, weight: %d}
`, w1, 100-w1)
	res, err := config.Parse([]byte(y.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Errors) > 0 {
		b.Fatalf("parse: %v", res.Errors)
	}
	cfg := config.NewSnapshot(res.Resources)
	return &state{version: version, cfg: cfg, reg: serviceentry.Build(cfg, ""), mesh: translate.DefaultMesh()}
}

// BenchmarkGeneratePush is one push of the xdsload bench's shape: a new
// state (the VirtualService's weight changed), then Generate for every
// proxy, as each stream does. 1,000 services, 500 proxies in one namespace.
func BenchmarkGeneratePush(b *testing.B) {
	const services, proxies = 1000, 500
	states := [2]*state{scaleState(b, 0, services, 90), scaleState(b, 0, services, 50)}
	nodes := make([]*corev3.Node, proxies)
	for i := range nodes {
		nodes[i] = node("bench", fmt.Sprintf("10.250.%d.%d", i/250, i%250+1))
	}
	g := newGenerator(translateFuncs{})
	var v uint64
	b.ReportAllocs()
	for b.Loop() {
		v++
		s := states[v%2]
		g.setState(&state{version: v, cfg: s.cfg, reg: s.reg, mesh: s.mesh})
		for _, n := range nodes {
			if _, err := g.Generate(n); err != nil {
				b.Fatal(err)
			}
		}
	}
}
