package trellisd

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/bench/xdsload/mesh"
	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// benchState is the xdsload bench's mesh (bench/xdsload/mesh) with n
// services and svc-0's VirtualService weight w1 for v1.
func benchState(b *testing.B, n, w1 int) *state {
	b.Helper()
	y := mesh.Services(0, n) + mesh.DestinationRule() + "---\n" + mesh.VirtualService(w1)
	res, err := config.Parse([]byte(y), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Errors) > 0 {
		b.Fatalf("parse: %v", res.Errors)
	}
	cfg := config.NewSnapshot(res.Resources)
	return &state{cfg: cfg, reg: serviceentry.Build(cfg, ""), mesh: translate.DefaultMesh()}
}

// BenchmarkGeneratePush is one push of the xdsload bench's shape: a new
// state (the VirtualService's weight changed), then Generate for every
// proxy, as each stream does. 1,000 services, 500 proxies in one namespace
// labelled as xdsload's are.
func BenchmarkGeneratePush(b *testing.B) {
	const services, proxies = 1000, 500
	states := [2]*state{benchState(b, services, 90), benchState(b, services, 50)}
	labels, err := structpb.NewStruct(map[string]any{"app": "load"})
	if err != nil {
		b.Fatal(err)
	}
	nodes := make([]*corev3.Node, proxies)
	for i := range nodes {
		nodes[i] = node(mesh.Namespace, fmt.Sprintf("10.250.%d.%d", i/250, i%250+1))
		nodes[i].Metadata.Fields["LABELS"] = structpb.NewStructValue(labels)
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
