package config

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedDir finds the shared/ directory that sits beside the repository
// root (/work/shared beside /work/main, or beside a CI clone), or skips.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(dir), "shared")
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				return s
			}
			t.Skipf("no shared/ directory beside the repository root %s", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
}
