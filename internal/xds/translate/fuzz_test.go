package translate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
)

// FuzzTranslate feeds arbitrary Istio YAML through config.Parse and
// translates it for a sidecar, a gateway and a gRPC client: translation
// must never panic and must always produce config that passes Envoy's
// proto validation and the consistency oracle.
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/input.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	proxies := []*Proxy{
		{ID: "sidecar~10.0.10.9~pp.default~default.svc.cluster.local", Type: SidecarProxy, IPs: []string{"10.0.10.9"}, Namespace: "default", Labels: map[string]string{"app": "productpage"}},
		{ID: "router~10.0.0.100~gw.istio-system~istio-system.svc.cluster.local", Type: RouterProxy, IPs: []string{"10.0.0.100"}, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}},
		{ID: "sidecar~10.0.10.20~c.default~default.svc.cluster.local", Type: SidecarProxy, Namespace: "default", Generator: GeneratorGRPC},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := config.Parse(data, "fuzz.yaml")
		if err != nil || len(res.Resources) == 0 {
			return
		}
		cfg := config.NewSnapshot(res.Resources)
		reg := serviceentry.Build(cfg, "")
		for _, p := range proxies {
			out := Translate(Input{Proxy: p, Config: cfg, Registry: reg, Mesh: DefaultMesh()})
			for _, c := range out.Clusters {
				if err := c.ValidateAll(); err != nil {
					t.Fatalf("cluster %s: %v", c.GetName(), err)
				}
			}
			for _, l := range out.Listeners {
				if err := l.ValidateAll(); err != nil {
					t.Fatalf("listener %s: %v", l.GetName(), err)
				}
			}
			for _, r := range out.Routes {
				if err := r.ValidateAll(); err != nil {
					t.Fatalf("route %s: %v", r.GetName(), err)
				}
			}
		}
	})
}
