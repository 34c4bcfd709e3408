package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

// sharedDir finds the shared/ directory beside the repository root, or skips.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(dir), "shared")
			if _, err := os.Stat(s); err != nil {
				t.Skipf("no shared/ beside the repository root %s", dir)
			}
			return s
		}
		if filepath.Dir(dir) == dir {
			t.Skip("repository root not found")
		}
		dir = filepath.Dir(dir)
	}
}

// TestSharedFilesValid: every Istio resource in the seed scenarios and in
// Istio's own samples passes validation with no errors.
func TestSharedFilesValid(t *testing.T) {
	shared := sharedDir(t)
	var files []string
	for _, pat := range []string{"scenarios/*/*.yaml", "istio-samples/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(shared, pat))
		files = append(files, m...)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(shared, f)
		pr, err := config.Parse(data, rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range pr.Errors {
			t.Errorf("%v", e)
		}
		res := Resources(pr.Resources)
		for _, e := range res.Errors {
			t.Errorf("%s", e.String())
		}
		// The only finding allowed is "not enforced yet", once per security
		// resource.
		for _, e := range res.NotEnforced {
			if _, ok := notEnforced[kindOf(e.Resource)]; !ok || !strings.HasPrefix(e.Message, "not enforced yet") {
				t.Errorf("unexpected finding %s", e.String())
			}
		}
		want := 0
		for _, r := range pr.Resources {
			if _, ok := notEnforced[r.Kind]; ok {
				want++
			}
		}
		if len(res.NotEnforced) != want {
			t.Errorf("%s: got %d not-enforced findings, want %d (one per security resource)", rel, len(res.NotEnforced), want)
		}
		n += len(pr.Resources)
	}
	if n < 50 {
		t.Errorf("validated %d resources, want at least 50", n)
	}
}

func kindOf(resource string) string {
	k, _, _ := strings.Cut(resource, " ")
	return k
}
