package outlier

import (
	"fmt"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newHosts(n int) []*lb.Host {
	hs := make([]*lb.Host, n)
	for i := range hs {
		hs[i] = &lb.Host{Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return hs
}

func TestEjection(t *testing.T) {
	type step struct {
		host   int
		result Result
		times  int
	}
	tests := []struct {
		name        string
		cfg         func(*Config)
		steps       []step
		wantEjected []bool
	}{
		{"five 503s eject", nil, []step{{0, Result{Status: 503}, 5}}, []bool{true, false, false}},
		{"four 503s do not", nil, []step{{0, Result{Status: 503}, 4}}, []bool{false, false, false}},
		{"a success resets the count", nil, []step{{0, Result{Status: 500}, 4}, {0, Result{Status: 200}, 1}, {0, Result{Status: 500}, 4}}, []bool{false, false, false}},
		{"connect failures count as 5xx", nil, []step{{1, Result{ConnectFailure: true}, 5}}, []bool{false, true, false}},
		{"consecutive 5xx threshold from config", func(c *Config) { c.Consecutive5xx = 2 }, []step{{2, Result{Status: 502}, 2}}, []bool{false, false, true}},
		{"not enforcing", func(c *Config) { c.EnforcingConsecutive5xx = 0 }, []step{{0, Result{Status: 503}, 10}}, []bool{false, false, false}},
		{"gateway errors when enforced", func(c *Config) {
			c.EnforcingConsecutive5xx = 0
			c.EnforcingConsecutiveGatewayFailure = 100
			c.ConsecutiveGatewayFailure = 3
		}, []step{{0, Result{Status: 504}, 3}}, []bool{true, false, false}},
		{"500 is not a gateway error", func(c *Config) {
			c.EnforcingConsecutive5xx = 0
			c.EnforcingConsecutiveGatewayFailure = 100
			c.ConsecutiveGatewayFailure = 3
		}, []step{{0, Result{Status: 500}, 3}}, []bool{false, false, false}},
		{"split local origin errors count separately", func(c *Config) {
			c.SplitExternalLocalOriginErrors = true
			c.ConsecutiveLocalOriginFailure = 2
		}, []step{{0, Result{Timeout: true}, 2}}, []bool{true, false, false}},
		{"max ejection percent allows the first, blocks the second", func(c *Config) { c.MaxEjectionPercent = 10 },
			[]step{{0, Result{Status: 503}, 5}, {1, Result{Status: 503}, 5}}, []bool{true, false, false}},
		{"max ejection percent 100 ejects all", func(c *Config) { c.MaxEjectionPercent = 100 },
			[]step{{0, Result{Status: 503}, 5}, {1, Result{Status: 503}, 5}, {2, Result{Status: 503}, 5}}, []bool{true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			changes := 0
			c := &clock{t: time.Unix(1000, 0)}
			d := New(cfg, Options{Now: c.now, Rand: func() uint64 { return 0 }, OnChange: func() { changes++ }})
			hs := newHosts(3)
			d.SetHosts(hs)
			for _, s := range tt.steps {
				for i := 0; i < s.times; i++ {
					d.Report(hs[s.host], s.result)
				}
			}
			want := 0
			for i, w := range tt.wantEjected {
				if got := hs[i].Ejected(); got != w {
					t.Errorf("host %d: got ejected %v, want %v", i, got, w)
				}
				if w {
					want++
				}
			}
			if changes != want {
				t.Errorf("got %d change callbacks, want %d", changes, want)
			}
		})
	}
}

func TestEjectionTimeGrowsAndReturns(t *testing.T) {
	cfg := Defaults()
	cfg.BaseEjectionTime = 30 * time.Second
	cfg.Interval = 10 * time.Second
	c := &clock{t: time.Unix(1000, 0)}
	store := stats.NewStore()
	st := NewStats(store.Scope("cluster", "c"))
	d := New(cfg, Options{Now: c.now, Rand: func() uint64 { return 0 }, Stats: st})
	hs := newHosts(2)
	d.SetHosts(hs)
	eject := func() {
		for i := 0; i < 5; i++ {
			d.Report(hs[0], Result{Status: 503})
		}
	}
	eject()
	if got := d.EjectedUntil(hs[0]); !got.Equal(c.t.Add(30 * time.Second)) {
		t.Fatalf("first ejection: got until %v, want +30s", got.Sub(c.t))
	}
	if got := st.EjectionsActive.Value(); got != 1 {
		t.Errorf("got ejections_active %d, want 1", got)
	}
	c.advance(20 * time.Second)
	if n := d.Sweep(); n != 0 || !hs[0].Ejected() {
		t.Fatalf("at 20s: got %d returned, ejected %v; want still ejected", n, hs[0].Ejected())
	}
	c.advance(10 * time.Second)
	if n := d.Sweep(); n != 1 || hs[0].Ejected() {
		t.Fatalf("at 30s: got %d returned, want the host back", n)
	}
	// Second ejection right away lasts twice as long (base × count).
	eject()
	if got := d.EjectedUntil(hs[0]).Sub(c.t); got != 60*time.Second {
		t.Errorf("second ejection: got %v, want 60s", got)
	}
	if got := store.CounterValue("cluster.c.outlier_detection.ejections_enforced_consecutive_5xx"); got != 2 {
		t.Errorf("got ejections_enforced_consecutive_5xx %d, want 2", got)
	}
	c.advance(60 * time.Second)
	d.Sweep()
	// Healthy for long enough, the multiplier decays back.
	for i := 0; i < 3; i++ {
		c.advance(cfg.Interval + 60*time.Second)
		d.Sweep()
	}
	eject()
	if got := d.EjectedUntil(hs[0]).Sub(c.t); got != 30*time.Second {
		t.Errorf("after decay: got %v, want 30s", got)
	}
}

func TestMaxEjectionTimeCaps(t *testing.T) {
	cfg := Defaults()
	cfg.BaseEjectionTime = 100 * time.Second
	cfg.MaxEjectionTime = 150 * time.Second
	c := &clock{t: time.Unix(0, 0)}
	d := New(cfg, Options{Now: c.now, Rand: func() uint64 { return 0 }})
	hs := newHosts(1)
	d.SetHosts(hs)
	for round := 0; round < 3; round++ {
		for i := 0; i < 5; i++ {
			d.Report(hs[0], Result{Status: 500})
		}
		until := d.EjectedUntil(hs[0]).Sub(c.t)
		if until > 150*time.Second {
			t.Fatalf("round %d: got ejection %v, want at most 150s", round, until)
		}
		c.advance(until)
		d.Sweep()
	}
}

func TestReportSuccessDoesNotAllocate(t *testing.T) {
	d := New(Defaults(), Options{})
	hs := newHosts(2)
	d.SetHosts(hs)
	if n := testing.AllocsPerRun(1000, func() { d.Report(hs[0], Result{Status: 200}) }); n != 0 {
		t.Errorf("got %v allocations per report, want 0", n)
	}
}
