package install

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestChartUpToDate checks that the committed chart is what Chart
// generates from the renderer, so the two never drift.
func TestChartUpToDate(t *testing.T) {
	files, err := Chart()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", ChartDir)
	if *update {
		os.RemoveAll(filepath.Join(dir, "templates"))
		for name, b := range files {
			p := filepath.Join(dir, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	var committed []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			committed = append(committed, rel)
		}
		return nil
	})
	sort.Strings(committed)
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s/%s is not generated any more; run go test ./internal/install -run TestChartUpToDate -update", ChartDir, name)
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s/%s: %v; run go test ./internal/install -run TestChartUpToDate -update", ChartDir, name, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("%s/%s differs from what the renderer generates; run go test ./internal/install -run TestChartUpToDate -update and review", ChartDir, name)
		}
	}
}
