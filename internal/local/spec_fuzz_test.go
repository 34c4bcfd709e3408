package local

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadSpec: any file either fails with an error or gives a spec that
// plans without panicking and whose names are usable as interface and
// namespace names.
func FuzzLoadSpec(f *testing.F) {
	seed, _ := os.ReadFile("testdata/billing.yaml")
	f.Add(string(seed))
	f.Add("workloads: [{name: a, labels: {x: y}}]\nservices: [{name: s, ports: [{port: 80}], selector: {x: y}}]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "spec.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		spec, err := LoadSpec(path)
		if err != nil {
			return
		}
		p, err := NewPlan(spec, Options{})
		if err != nil {
			return
		}
		for _, w := range p.Workloads {
			if len(w.HostVeth) > 15 {
				t.Fatalf("veth name %q longer than 15", w.HostVeth)
			}
			if !p.Options.Subnet.Contains(w.IP) {
				t.Fatalf("workload IP %s outside %s", w.IP, p.Options.Subnet)
			}
		}
		if _, err := p.MeshConfig(); err != nil {
			t.Fatal(err)
		}
	})
}
