package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestSoakFlat drives the soak's flatness check (no mesh, no root) with
// series shaped like what it must tell apart: a GC sawtooth and
// load-following goroutine counts are flat; a steady RSS or goroutine
// growth is not.
func TestSoakFlat(t *testing.T) {
	series := func(n int, rss func(i int) int, gor func(i int) int) []soakSample {
		var out []soakSample
		for i := range n {
			out = append(out, soakSample{at: time.Duration(i) * 30 * time.Second, procs: []procSample{{rss: rss(i), goroutines: gor(i)}}})
		}
		return out
	}
	const MiB = 1 << 20
	sawtooth := func(i int) int { return 40*MiB + (i%4)*2*MiB } // 40-46 MiB between collections
	loadFollowing := func(i int) int { return 300 + (i*37)%60 } // 300-359 with the load's connections
	for _, c := range []struct {
		name    string
		rss     func(int) int
		gor     func(int) int
		wantErr string // "" for flat
	}{
		{"GC sawtooth and load-following goroutines", sawtooth, loadFollowing, ""},
		{"one latency spike in the last window", sawtooth, func(i int) int {
			if i == 48 {
				return 900
			}
			return loadFollowing(i)
		}, ""},
		{"RSS leak of 0.5 MiB a sample", func(i int) int { return sawtooth(i) + i*MiB/2 }, loadFollowing, "RSS grew"},
		{"a goroutine leaked per sample", sawtooth, func(i int) int { return loadFollowing(i) + 2*i }, "goroutines grew"},
		{"goroutines not read", sawtooth, func(int) int { return -1 }, "goroutines not read"},
	} {
		err := flat(series(50, c.rss, c.gor), 0)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want flat", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.wantErr)
		}
	}
	if err := flat(series(4, sawtooth, loadFollowing), 0); err == nil {
		t.Errorf("4 samples: got flat, want an error (too few to compare)")
	}
}
