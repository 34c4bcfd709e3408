package translate

import (
	"path/filepath"
	"testing"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/config"
)

// TestTracingChoice walks the tracing-telemetry case through the choices
// that decide whether and how a side is traced.
func TestTracingChoice(t *testing.T) {
	base := loadCase(t, filepath.Join("testdata", "tracing-telemetry"))
	without := func(in Input, names ...string) Input {
		store := config.NewStore()
		var keep []*config.Resource
		drop := map[string]bool{}
		for _, n := range names {
			drop[n] = true
		}
		for _, r := range in.Config.All() {
			if !drop[r.Name] {
				keep = append(keep, r)
			}
		}
		store.SetAll("in", keep, nil)
		in.Config = store.Snapshot()
		return in
	}
	for _, c := range []struct {
		name     string
		in       Input
		client   bool
		provider string // "" = no tracing
		sampling float64
	}{
		{"root Telemetry, client side", base, true, OpenTelemetryTracer, 10},
		{"workload Telemetry, server side", base, false, ZipkinTracer, 100},
		{"no Telemetry: MeshConfig default provider and sampling", without(base, "mesh-default", "bookinfo", "reviews-server"), true, ZipkinTracer, 5},
		{"no sampling anywhere: 1%", func() Input {
			in := without(base, "mesh-default", "bookinfo", "reviews-server")
			in.Mesh.TraceSampling = nil
			return in
		}(), true, ZipkinTracer, 1},
		{"no provider anywhere", func() Input {
			in := without(base, "mesh-default", "bookinfo", "reviews-server")
			in.Mesh.DefaultTracingProviders = nil
			return in
		}(), true, "", 0},
		{"a provider no extensionProviders entry has", func() Input {
			in := base
			in.Mesh.ExtensionProviders = []*meshv1alpha1.MeshConfig_ExtensionProvider{{Name: "zipkin", Provider: &meshv1alpha1.MeshConfig_ExtensionProvider_Zipkin{
				Zipkin: &meshv1alpha1.MeshConfig_ExtensionProvider_ZipkinTracingProvider{Service: "zipkin.istio-system.svc.cluster.local", Port: 9411}}}}
			return in
		}(), true, "", 0},
		{"a ratings workload: disableSpanReporting", withProxy(base, func(p *Proxy) { p.Labels = map[string]string{"app": "ratings"} }), true, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newScope(c.in).tracing(c.client)
			if c.provider == "" {
				if tr != nil {
					t.Fatalf("got tracing %v, want none", tr)
				}
				return
			}
			if tr == nil {
				t.Fatalf("got no tracing, want %s", c.provider)
			}
			if got := tr.GetProvider().GetName(); got != c.provider {
				t.Errorf("got provider %s, want %s", got, c.provider)
			}
			if got := tr.GetRandomSampling().GetValue(); got != c.sampling {
				t.Errorf("got sampling %v, want %v", got, c.sampling)
			}
			checkProvider(t, tr)
		})
	}
}

func checkProvider(t *testing.T, tr *hcmv3.HttpConnectionManager_Tracing) {
	t.Helper()
	m, err := tr.GetProvider().GetTypedConfig().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	switch p := m.(type) {
	case *tracev3.ZipkinConfig:
		if p.GetCollectorCluster() != "outbound|9411||zipkin.istio-system.svc.cluster.local" || !p.GetTraceId_128Bit() || p.GetSharedSpanContext().GetValue() {
			t.Errorf("got %v", p)
		}
	case *tracev3.OpenTelemetryConfig:
		if p.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "outbound|4317||otel-collector.observability.svc.cluster.local" {
			t.Errorf("got %v", p)
		}
	}
}
