package translate

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestStatsConfigBytesStable: the istio.stats config (a Struct, whose
// fields are a map) marshals to the same bytes on every translation, so
// an unchanged listener keeps its version.
func TestStatsConfigBytesStable(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "metrics-telemetry"))
	var first []byte
	for i := 0; i < 20; i++ {
		s := newScope(in)
		cfg := s.statsConfig(false)
		if cfg == nil {
			t.Fatal("got no inbound stats config, want the merged overrides")
		}
		if i == 0 {
			first = cfg.GetValue()
		} else if !bytes.Equal(cfg.GetValue(), first) {
			t.Fatalf("translation %d: stats config bytes changed", i)
		}
	}
}
