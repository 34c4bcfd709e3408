package install

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary --set values and overlay files: Load must
// return settings or an error, never panic, and whatever it accepts must
// render.
func FuzzLoad(f *testing.F) {
	f.Add("values.global.proxy.includeIPRanges=10.0.0.0/8", "spec:\n  profile: demo\n")
	f.Add("components.ingressGateways[3].enabled=true", "spec:\n  components:\n    egressGateways:\n    - name: x\n      enabled: true\n")
	f.Add("meshConfig.defaultConfig.concurrency=4", "kind: IstioOperator\nspec: []\n")
	f.Add("a[1].b[2]=c", "spec:\n  values:\n    pilot:\n      resources:\n        requests:\n          cpu: 1\n")
	f.Fuzz(func(t *testing.T, set, file string) {
		p := filepath.Join(t.TempDir(), "o.yaml")
		if err := os.WriteFile(p, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(Options{Files: []string{p}, Set: []string{set}})
		if err != nil {
			return
		}
		if _, err := Render(s); err != nil {
			t.Errorf("accepted settings do not render: %v", err)
		}
	})
}
