package shift

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/file"
)

// storeWeights returns the burst subset's weight in the snapshot's
// worker VirtualService, or -1 when the snapshot has none.
func storeWeights(s *config.Snapshot) (primary, burst int32) {
	r := s.Get(config.Key{Kind: config.KindVirtualService, Namespace: "default", Name: "worker-virtual-service"})
	if r == nil {
		return -1, -1
	}
	for _, d := range r.Spec.(*networkingv1alpha3.VirtualService).GetHttp()[0].GetRoute() {
		switch d.GetDestination().GetSubset() {
		case "primary":
			primary = d.GetWeight()
		case "burst":
			burst = d.GetWeight()
		}
	}
	return primary, burst
}

// requestSource is a metrics endpoint exposing istio_requests_total the
// way a destination sidecar does, with counters that grow at a rate the
// test sets.
type requestSource struct {
	mu    sync.Mutex
	rates map[string]float64 // source_workload -> req/s
	vec   *prometheus.CounterVec
}

func newRequestSource(t *testing.T) (*requestSource, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := &requestSource{rates: map[string]float64{}, vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istio_requests_total", Help: "Total requests.",
	}, []string{"reporter", "source_workload", "destination_service", "response_code"})}
	reg.MustRegister(s.vec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); srv.Close() })
	go func() { // count requests every 20 ms at the set rates
		const tick = 20 * time.Millisecond
		tk := time.NewTicker(tick)
		defer tk.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				dt := now.Sub(last).Seconds()
				last = now
				s.mu.Lock()
				for w, r := range s.rates {
					s.vec.WithLabelValues("destination", w, "worker-service.default.svc.cluster.local", "200").Add(r * dt)
				}
				s.mu.Unlock()
			}
		}
	}()
	return s, ln.Addr().String()
}

func (s *requestSource) set(workload string, rate float64) {
	s.mu.Lock()
	s.rates[workload] = rate
	s.mu.Unlock()
}

// startPrometheus runs a real Prometheus scraping target every second.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: prometheus is not installed (apt-get install --no-install-recommends prometheus, or scripts/setup.sh)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: sidecar
  metrics_path: /metrics
  static_configs:
  - targets: [%q]
`, target)), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready after 30 s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShiftWithRealPrometheus drives the controller end to end: a real
// Prometheus scrapes istio_requests_total, the controller queries its HTTP
// API with the seed's query, and the VirtualService file in a config
// directory flips 100/0 -> 0/100 above 15 req/s, stays put between 10 and
// 15, and flips back below 10. Another workload's heavy traffic to the
// same service must not count.
func TestShiftWithRealPrometheus(t *testing.T) {
	src, target := newRequestSource(t)
	src.set("frontend-deployment", 2)
	src.set("batch-job", 100) // filtered out by source_workload
	promURL := startPrometheus(t, target)

	dir := t.TempDir()
	orig, err := os.ReadFile("testdata/natural.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, dir, "worker-virtualservice.yaml", string(orig))
	// The rest of the scenario: its Services and the worker DestinationRule.
	services, err := os.ReadFile("testdata/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "services.yaml", string(services))
	split, err := os.ReadFile("testdata/worker-virtualservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "destination-rule.yaml", string(split[bytes.Index(split, []byte("---\n"))+4:]))

	// trellisd's side: the config-dir watcher feeding a store. Every
	// snapshot it publishes must hold the VirtualService whole.
	store := config.NewStore()
	var snapMu sync.Mutex
	var seen []string
	store.Subscribe(func(s *config.Snapshot) {
		p, b := storeWeights(s)
		snapMu.Lock()
		seen = append(seen, fmt.Sprintf("%d/%d", p, b))
		snapMu.Unlock()
	})
	watcher := file.New(dir, store, file.Options{Logf: t.Logf})
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- watcher.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-wdone })
	<-watcher.Synced()
	storeIs := func(stage string, primary, burst int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, b := storeWeights(store.Snapshot())
			if p == primary && b == burst {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the watcher's store holds %d/%d, want %d/%d", stage, p, b, primary, burst)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	sampler, err := NewPrometheusSampler(promURL, DefaultQuery("worker-service.default.svc.cluster.local", "frontend-deployment", 4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	decisions := make(chan Decision, 1024)
	ctrl, err := New(Options{
		Sampler: sampler, Up: 15, Down: 10, Interval: 250 * time.Millisecond,
		VirtualService: worker, BurstSubset: "burst", NaturalSubset: "primary",
		Applier:    &FileApplier{Dir: dir},
		OnDecision: func(d Decision) { decisions <- d },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// waitFor reads decisions until ok says stop.
	waitFor := func(what string, ok func(Decision) bool) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case d := <-decisions:
				if d.Err != nil {
					t.Logf("decision error: %v", d.Err)
					continue
				}
				if ok(d) {
					return
				}
			case <-timeout:
				t.Fatalf("%s: not seen within 60 s", what)
			}
		}
	}
	// steadyBand waits for n samples in a row inside (lo, hi).
	steadyBand := func(lo, hi float64, n int) {
		t.Helper()
		in := 0
		waitFor(fmt.Sprintf("%d samples in a row between %g and %g req/s", n, lo, hi), func(d Decision) bool {
			if d.Rate > lo && d.Rate < hi {
				in++
			} else {
				in = 0
			}
			return in >= n
		})
	}
	check := func(stage string, primary, burst int32, state State) {
		t.Helper()
		w := weightsIn(t, path, worker)
		if w["primary"] != primary || w["burst"] != burst {
			t.Errorf("%s: weights got primary %d burst %d, want %d/%d", stage, w["primary"], w["burst"], primary, burst)
		}
		if got := ctrl.State(); got != state {
			t.Errorf("%s: state got %s, want %s", stage, got, state)
		}
	}

	// Quiet: natural, the file keeps its bytes.
	waitFor("a natural decision at 2 req/s", func(d Decision) bool { return d.To == Natural && d.Rate > 0 })
	check("quiet", 100, 0, Natural)
	if got, _ := os.ReadFile(path); string(got) != string(orig) {
		t.Errorf("quiet: file rewritten although already natural")
	}

	// Burst: above 15 req/s.
	src.set("frontend-deployment", 30)
	waitFor("shift to burst at 30 req/s", func(d Decision) bool { return d.Changed && d.To == Burst })
	check("burst", 0, 100, Burst)
	storeIs("burst", 0, 100)

	// Between 10 and 15: no change.
	src.set("frontend-deployment", 12.5)
	steadyBand(10, 15, 8)
	check("burst then 12.5 req/s", 0, 100, Burst)

	// Below 10: back to natural.
	src.set("frontend-deployment", 4)
	waitFor("shift to natural at 4 req/s", func(d Decision) bool { return d.Changed && d.To == Natural })
	check("natural", 100, 0, Natural)
	storeIs("natural", 100, 0)

	// Between again, now from natural: still no change.
	src.set("frontend-deployment", 12.5)
	steadyBand(10, 15, 8)
	check("natural then 12.5 req/s", 100, 0, Natural)

	// The watcher saw exactly the two flips, each as one whole file.
	snapMu.Lock()
	defer snapMu.Unlock()
	var flips []string
	for _, w := range seen {
		if w != "100/0" && w != "0/100" {
			t.Errorf("store published a snapshot with weights %s; want only whole VirtualServices (100/0 or 0/100)", w)
		}
		if len(flips) == 0 || flips[len(flips)-1] != w {
			flips = append(flips, w)
		}
	}
	if got, want := fmt.Sprint(flips), "[100/0 0/100 100/0]"; got != want {
		t.Errorf("store weight history: got %s, want %s", got, want)
	}
	if errs := watcher.Errors(); len(errs) > 0 {
		t.Errorf("watcher errors: %v", errs)
	}
}
