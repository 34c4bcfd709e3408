package translate

import (
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

// TestPeerAuthenticationPrecedence: Istio's resolution of the mode in
// force on one workload port: workload over namespace over mesh (root
// namespace), UNSET inheriting from the level above, portLevelMtls over
// the workload mode, PERMISSIVE when nothing is set, and policies of
// other namespaces or non-matching selectors ignored.
func TestPeerAuthenticationPrecedence(t *testing.T) {
	pa := func(name, ns, selector, mode, ports string) string {
		s := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n"
		if selector != "" {
			s += "  selector: {matchLabels: {" + selector + "}}\n"
		}
		if mode != "" {
			s += "  mtls: {mode: " + mode + "}\n"
		}
		if ports != "" {
			s += "  portLevelMtls: {" + ports + "}\n"
		}
		return s + "---\n"
	}
	names := map[peerMode]string{peerPermissive: "PERMISSIVE", peerStrict: "STRICT", peerDisable: "DISABLE"}
	cases := []struct {
		name   string
		config string
		port   uint32
		want   peerMode
	}{
		{"nothing", "", 80, peerPermissive},
		{"mesh strict", pa("default", "istio-system", "", "STRICT", ""), 80, peerStrict},
		{"mesh unset", pa("default", "istio-system", "", "UNSET", ""), 80, peerPermissive},
		{"mesh selector is not mesh-wide", pa("gw", "istio-system", "app: web", "STRICT", ""), 80, peerPermissive},
		{"namespace over mesh", pa("default", "istio-system", "", "STRICT", "") + pa("default", "shop", "", "DISABLE", ""), 80, peerDisable},
		{"namespace unset inherits mesh", pa("default", "istio-system", "", "STRICT", "") + pa("default", "shop", "", "UNSET", ""), 80, peerStrict},
		{"other namespace ignored", pa("default", "bank", "", "STRICT", ""), 80, peerPermissive},
		{"workload over namespace", pa("default", "shop", "", "STRICT", "") + pa("web", "shop", "app: web", "PERMISSIVE", ""), 80, peerPermissive},
		{"workload selector not matching", pa("default", "shop", "", "STRICT", "") + pa("db", "shop", "app: db", "DISABLE", ""), 80, peerStrict},
		{"workload without mtls inherits", pa("default", "shop", "", "STRICT", "") + pa("web", "shop", "app: web", "", ""), 80, peerStrict},
		{"port level over workload", pa("web", "shop", "app: web", "STRICT", "8080: {mode: DISABLE}"), 8080, peerDisable},
		{"port level other port", pa("web", "shop", "app: web", "STRICT", "8080: {mode: DISABLE}"), 80, peerStrict},
		{"port level unset inherits workload's inherited mode", pa("default", "istio-system", "", "STRICT", "") + pa("web", "shop", "app: web", "UNSET", "8080: {mode: UNSET}"), 8080, peerStrict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cfg *config.Snapshot
			if tc.config != "" {
				res, err := config.Parse([]byte(tc.config), "pa.yaml")
				if err != nil {
					t.Fatal(err)
				}
				cfg = config.NewSnapshot(res.Resources)
			} else {
				cfg = config.NewSnapshot(nil)
			}
			s := newScope(Input{Proxy: &Proxy{Type: SidecarProxy, Namespace: "shop", Labels: map[string]string{"app": "web"}}, Config: cfg, Mesh: DefaultMesh()})
			if got := s.peerAuthentication().forPort(tc.port); got != tc.want {
				t.Errorf("port %d: got %s, want %s", tc.port, names[got], names[tc.want])
			}
		})
	}
}
