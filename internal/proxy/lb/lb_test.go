package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func seeded(seed uint64) func() uint64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var mu sync.Mutex
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

func hosts(weights ...uint32) []*Host {
	out := make([]*Host, len(weights))
	for i, w := range weights {
		out[i] = &Host{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w}
	}
	return out
}

func count(b *Balancer, n int, ctx func(i int) *Context) map[*Host]int {
	got := map[*Host]int{}
	for i := 0; i < n; i++ {
		var c *Context
		if ctx != nil {
			c = ctx(i)
		}
		got[b.Pick(c)]++
	}
	return got
}

func TestDistribution(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		weights []uint32
		picks   int
		want    []float64 // expected share per host
		tol     float64   // absolute tolerance on the share
	}{
		{"round robin equal is exact", RoundRobin, []uint32{1, 1, 1}, 300, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, 0},
		{"round robin weighted is exact", RoundRobin, []uint32{1, 2, 7}, 1000, []float64{0.1, 0.2, 0.7}, 0},
		{"round robin 90/10", RoundRobin, []uint32{90, 10}, 1000, []float64{0.9, 0.1}, 0},
		{"random uniform", Random, []uint32{1, 1, 1, 1}, 40000, []float64{0.25, 0.25, 0.25, 0.25}, 0.01},
		{"random weighted", Random, []uint32{9, 1}, 40000, []float64{0.9, 0.1}, 0.01},
		{"least request idle hosts spread", LeastRequest, []uint32{1, 1}, 40000, []float64{0.5, 0.5}, 0.01},
		{"least request weighted", LeastRequest, []uint32{3, 1}, 40000, []float64{0.75, 0.25}, 0.01},
		{"ring hash random keys spread by weight", RingHash, []uint32{1, 1, 2}, 40000, []float64{0.25, 0.25, 0.5}, 0.05},
		{"maglev random keys spread by weight", Maglev, []uint32{1, 1, 2}, 40000, []float64{0.25, 0.25, 0.5}, 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := hosts(tt.weights...)
			b := New(Config{Policy: tt.policy, Rand: seeded(7)}, hs)
			got := count(b, tt.picks, nil)
			for i, h := range hs {
				share := float64(got[h]) / float64(tt.picks)
				if math.Abs(share-tt.want[i]) > tt.tol+1e-9 {
					t.Errorf("host %d: got share %.4f, want %.4f ± %.3f", i, share, tt.want[i], tt.tol)
				}
			}
		})
	}
}

func TestSmoothRoundRobinInterleaves(t *testing.T) {
	hs := hosts(5, 1, 1)
	b := New(Config{Rand: func() uint64 { return 0 }}, hs)
	// Smooth weighted round robin never sends the light hosts back to back
	// and never runs the heavy host more than its weight in a row.
	var seq []int
	for i := 0; i < 7; i++ {
		h := b.Pick(nil)
		for j := range hs {
			if hs[j] == h {
				seq = append(seq, j)
			}
		}
	}
	run := 0
	for i, s := range seq {
		if s == 0 {
			run++
		} else {
			run = 0
		}
		if run > 3 {
			t.Fatalf("got sequence %v, want the heavy host interleaved (run of %d at %d)", seq, run, i)
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	hs := hosts(1, 1, 1)
	for i := 0; i < 10; i++ {
		hs[0].StartRequest()
	}
	b := New(Config{Policy: LeastRequest, Rand: seeded(3)}, hs)
	got := count(b, 9000, nil)
	// With two choices the busy host only wins when drawn twice: 1/9.
	if share := float64(got[hs[0]]) / 9000; share > 0.15 {
		t.Errorf("busy host: got share %.3f, want about 1/9", share)
	}
}

func TestHashConsistency(t *testing.T) {
	// A ring re-spreads its points over the remaining hosts, so some keys
	// move between survivors; maglev's table barely moves them.
	for _, tc := range []struct {
		p        Policy
		maxMoved float64
	}{{RingHash, 0.2}, {Maglev, 0.05}} {
		p := tc.p
		t.Run(p.String(), func(t *testing.T) {
			hs := hosts(1, 1, 1, 1)
			b := New(Config{Policy: p, Rand: seeded(1)}, hs)
			before := map[uint64]*Host{}
			for k := uint64(0); k < 2000; k++ {
				h := Hash(fmt.Sprint("user-", k))
				got := b.Pick(&Context{Hash: h, HasHash: true})
				if again := b.Pick(&Context{Hash: h, HasHash: true}); again != got {
					t.Fatalf("key %d: got %s then %s, want the same host", k, got.Address, again.Address)
				}
				before[h] = got
			}
			// Removing a host only moves the keys it owned (maglev: nearly).
			b2 := New(Config{Policy: p, Rand: seeded(1)}, []*Host{hs[0], hs[1], hs[2]})
			moved := 0
			for h, was := range before {
				if was == hs[3] {
					continue
				}
				if b2.Pick(&Context{Hash: h, HasHash: true}) != was {
					moved++
				}
			}
			if limit := int(float64(len(before)) * tc.maxMoved); moved > limit {
				t.Errorf("got %d keys moved off surviving hosts, want at most %d", moved, limit)
			}
		})
	}
}

func TestPriorityFailover(t *testing.T) {
	tests := []struct {
		name     string
		ejectP0  int
		ejectP1  int
		wantP0   float64
		tol      float64
		wantNone bool
	}{
		{"all healthy stays on priority 0", 0, 0, 1, 0, false},
		{"one of four down: 1.4×75% caps at 100%", 1, 0, 1, 0, false},
		{"half down: 1.4×50% = 70% stays", 2, 0, 0.70, 0.02, false},
		{"all of priority 0 down fails over", 4, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hs []*Host
			for i := 0; i < 8; i++ {
				hs = append(hs, &Host{Address: fmt.Sprintf("10.0.%d.%d:80", i/4, i), Priority: uint32(i / 4)})
			}
			for i := 0; i < tt.ejectP0; i++ {
				hs[i].SetEjected(true)
			}
			for i := 0; i < tt.ejectP1; i++ {
				hs[4+i].SetEjected(true)
			}
			b := New(Config{Rand: seeded(11)}, hs)
			got := count(b, 20000, nil)
			p0 := 0
			for h, n := range got {
				if h == nil {
					t.Fatalf("got no host, want one")
				}
				if !h.Healthy() {
					t.Fatalf("got unhealthy host %s", h.Address)
				}
				if h.Priority == 0 {
					p0 += n
				}
			}
			if share := float64(p0) / 20000; math.Abs(share-tt.wantP0) > tt.tol+1e-9 {
				t.Errorf("got priority 0 share %.3f, want %.2f ± %.2f", share, tt.wantP0, tt.tol)
			}
		})
	}
}

func TestRefreshAfterEjection(t *testing.T) {
	hs := hosts(1, 1)
	b := New(Config{Rand: seeded(1)}, hs)
	hs[0].SetEjected(true)
	b.Refresh()
	for i := 0; i < 10; i++ {
		if got := b.Pick(nil); got != hs[1] {
			t.Fatalf("got %v, want the healthy host %s", got, hs[1].Address)
		}
	}
	hs[0].SetEjected(false)
	b.Refresh()
	if got := count(b, 10, nil); got[hs[0]] != 5 {
		t.Errorf("after return: got %d picks of host 0, want 5", got[hs[0]])
	}
}

func TestPanicAndNoHost(t *testing.T) {
	zero := 0.0
	tests := []struct {
		name      string
		threshold *float64
		eject     int
		wantNil   bool
		wantAny   bool
	}{
		{"no hosts at all", nil, -1, true, false},
		{"all ejected, default panic uses every host", nil, 3, false, true},
		{"all ejected, panic disabled", &zero, 3, true, false},
		{"one of three healthy: 1.4×33% < 50% panics", nil, 2, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hs []*Host
			if tt.eject >= 0 {
				hs = hosts(1, 1, 1)
				for i := 0; i < tt.eject; i++ {
					hs[i].SetEjected(true)
				}
			}
			b := New(Config{PanicThreshold: tt.threshold, Rand: seeded(5)}, hs)
			got := count(b, 300, nil)
			if tt.wantNil {
				if got[nil] != 300 {
					t.Errorf("got %v, want no host", got)
				}
				return
			}
			if tt.wantAny && len(got) != 3 {
				t.Errorf("got %d distinct hosts, want all 3 (panic mode)", len(got))
			}
		})
	}
}

func TestAvoidTried(t *testing.T) {
	for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
		t.Run(p.String(), func(t *testing.T) {
			hs := hosts(1, 1)
			b := New(Config{Policy: p, Rand: seeded(9)}, hs)
			for i := 0; i < 200; i++ {
				ctx := &Context{Tried: []*Host{hs[0]}, AvoidTried: true, Hash: uint64(i) * 7919, HasHash: i%2 == 0}
				if got := b.Pick(ctx); got == hs[0] {
					// Five attempts of a fair choice all landing on the
					// tried host happens 1/32 of the time for random ones.
					if p == RoundRobin {
						t.Fatalf("pick %d: got the tried host, want the other", i)
					}
				}
			}
		})
	}
}

func TestRoundRobinPickDoesNotAllocate(t *testing.T) {
	b := New(Config{}, hosts(1, 2, 3))
	if n := testing.AllocsPerRun(1000, func() { b.Pick(nil) }); n != 0 {
		t.Errorf("got %v allocations per pick, want 0", n)
	}
	ctx := &Context{}
	for _, p := range []Policy{Random, LeastRequest, RingHash, Maglev} {
		b := New(Config{Policy: p}, hosts(1, 1, 1))
		if n := testing.AllocsPerRun(1000, func() { b.Pick(ctx) }); n != 0 {
			t.Errorf("%v: got %v allocations per pick, want 0", p, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
		b.Run(p.String(), func(b *testing.B) {
			bal := New(Config{Policy: p}, hosts(1, 2, 3, 4, 5, 6, 7, 8))
			ctx := &Context{Hash: 12345, HasHash: true}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bal.Pick(ctx)
				}
			})
		})
	}
}

func TestLocalityWeighted(t *testing.T) {
	mk := func(zone string, w uint32, n int) []*Host {
		var out []*Host
		for i := 0; i < n; i++ {
			out = append(out, &Host{Address: fmt.Sprintf("%s-%d:80", zone, i), Locality: Locality{Zone: zone}, LocalityWeight: w})
		}
		return out
	}
	tests := []struct {
		name  string
		eject int // hosts of zone a ejected (of 4)
		wantA float64
	}{
		{"weights 3:1", 0, 0.75},
		{"half of a down: 3×0.7 : 1", 2, 2.1 / 3.1},
		{"all of a down", 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := mk("a", 3, 4), mk("b", 1, 4)
			for i := 0; i < tt.eject; i++ {
				a[i].SetEjected(true)
			}
			bal := New(Config{LocalityWeighted: true, Rand: seeded(21)}, append(a, b...))
			got := count(bal, 40000, nil)
			n := 0
			for h, c := range got {
				if h == nil || !h.Healthy() {
					t.Fatalf("got host %v, want a healthy one", h)
				}
				if h.Locality.Zone == "a" {
					n += c
				}
			}
			if share := float64(n) / 40000; math.Abs(share-tt.wantA) > 0.015 {
				t.Errorf("got zone a share %.3f, want %.3f", share, tt.wantA)
			}
		})
	}
}
