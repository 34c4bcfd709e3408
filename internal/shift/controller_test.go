package shift

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeApplier records the subsets it was asked for.
type fakeApplier struct {
	calls []string
	fail  error
}

func (f *fakeApplier) Apply(_ context.Context, _ Ref, subset string) (bool, error) {
	f.calls = append(f.calls, subset)
	if f.fail != nil {
		return false, f.fail
	}
	return true, nil
}

// seqSampler returns rates in order; a NaN-free sentinel -1 means "error".
type seqSampler struct {
	rates []float64
	i     int
}

var errScrape = errors.New("prometheus down")

func (s *seqSampler) Rate(context.Context) (float64, error) {
	r := s.rates[s.i]
	s.i++
	if r < 0 {
		return 0, errScrape
	}
	return r, nil
}

func testOptions(s Sampler, a Applier) Options {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return Options{
		Sampler: s, Applier: a, Up: 15, Down: 10,
		VirtualService: Ref{Namespace: "default", Name: "worker-virtual-service"},
		BurstSubset:    "burst", NaturalSubset: "primary",
		Now: func() time.Time { clock = clock.Add(time.Second); return clock },
	}
}

func TestControllerHysteresis(t *testing.T) {
	tests := []struct {
		name   string
		rates  []float64 // -1: the sample fails
		states []State   // after each sample
		calls  []string  // applier calls, in order
	}{
		{"quiet start writes natural once", []float64{0, 3, 9.9}, []State{Natural, Natural, Natural}, []string{"primary"}},
		{"band at start writes nothing", []float64{10, 12, 15}, []State{Unknown, Unknown, Unknown}, nil},
		{"above up bursts", []float64{5, 15.1}, []State{Natural, Burst}, []string{"primary", "burst"}},
		{"exactly up does not burst", []float64{5, 15, 15}, []State{Natural, Natural, Natural}, []string{"primary"}},
		{"in band after burst stays burst", []float64{20, 14, 10, 12.5, 10}, []State{Burst, Burst, Burst, Burst, Burst}, []string{"burst"}},
		{"below down returns", []float64{20, 12, 9.99, 12, 14.9}, []State{Burst, Burst, Natural, Natural, Natural}, []string{"burst", "primary"}},
		{"no flapping around one threshold", []float64{16, 14, 16, 14, 16}, []State{Burst, Burst, Burst, Burst, Burst}, []string{"burst"}},
		{"full cycle twice", []float64{1, 30, 5, 30, 5}, []State{Natural, Burst, Natural, Burst, Natural}, []string{"primary", "burst", "primary", "burst", "primary"}},
		{"failed sample keeps state", []float64{30, -1, 2}, []State{Burst, Burst, Natural}, []string{"burst", "primary"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &fakeApplier{}
			c, err := New(testOptions(&seqSampler{rates: tc.rates}, app))
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.states {
				d := c.Step(context.Background())
				if tc.rates[i] < 0 {
					if !errors.Is(d.Err, errScrape) {
						t.Errorf("sample %d: got err %v, want %v", i, d.Err, errScrape)
					}
				} else if d.Err != nil {
					t.Fatalf("sample %d: %v", i, d.Err)
				}
				if got := c.State(); got != want {
					t.Errorf("sample %d (rate %g): got state %s, want %s", i, tc.rates[i], got, want)
				}
			}
			if strings.Join(app.calls, ",") != strings.Join(tc.calls, ",") {
				t.Errorf("applier calls: got %q, want %q", app.calls, tc.calls)
			}
		})
	}
}

func TestControllerApplyFailureRetries(t *testing.T) {
	app := &fakeApplier{fail: errors.New("disk full")}
	c, err := New(testOptions(&seqSampler{rates: []float64{30, 30, 30}}, app))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Step(context.Background())
	if d.Err == nil || !strings.Contains(d.Err.Error(), "disk full") || d.Changed {
		t.Fatalf("failing apply: got %+v, want an error and no change", d)
	}
	if c.State() != Unknown {
		t.Fatalf("state after failed apply: got %s, want unknown", c.State())
	}
	app.fail = nil
	d = c.Step(context.Background())
	if !d.Changed || c.State() != Burst {
		t.Fatalf("retry: got changed=%v state %s, want a change to burst", d.Changed, c.State())
	}
	if got, want := len(app.calls), 2; got != want {
		t.Errorf("applier calls: got %d, want %d", got, want)
	}
}

func TestDecisionString(t *testing.T) {
	c, err := New(testOptions(&seqSampler{rates: []float64{17.23, 12, 8.04}}, &fakeApplier{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"rate 17.2 req/s > 15: shifting worker-virtual-service to burst (100%)",
		"rate 12.0 req/s: staying burst",
		"rate 8.0 req/s < 10: shifting worker-virtual-service to primary (100%)",
	}
	for i, w := range want {
		if got := c.Step(context.Background()).String(); got != w {
			t.Errorf("decision %d: got %q, want %q", i, got, w)
		}
	}
}

func TestControllerRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	o := testOptions(SamplerFunc(func(context.Context) (float64, error) { return 20, nil }), &fakeApplier{})
	o.Interval = time.Millisecond
	o.OnDecision = func(Decision) {
		n++
		if n == 3 {
			cancel()
		}
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		t.Fatalf("run: got %v, want nil", err)
	}
	if n != 3 || c.State() != Burst {
		t.Errorf("got %d decisions, state %s; want 3, burst", n, c.State())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	good := testOptions(&seqSampler{}, &fakeApplier{})
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"down above up", func(o *Options) { o.Down = 20 }, "down: got 20"},
		{"zero up", func(o *Options) { o.Up = 0 }, "up: got 0"},
		{"same subsets", func(o *Options) { o.BurstSubset = "primary" }, "two different subset names"},
		{"no applier", func(o *Options) { o.Applier = nil }, "applier: required"},
		{"no sampler", func(o *Options) { o.Sampler = nil }, "sampler: required"},
		{"no name", func(o *Options) { o.VirtualService.Name = "" }, "namespace/name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.modify(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{"default/worker-virtual-service", Ref{"default", "worker-virtual-service"}, false},
		{"worker-virtual-service", Ref{"default", "worker-virtual-service"}, false},
		{"a/b/c", Ref{}, true},
		{"/x", Ref{}, true},
		{"", Ref{}, true},
	}
	for _, tc := range tests {
		got, err := ParseRef(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRef(%q): got %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
