package shift

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
	"github.com/trellis-mesh/trellis/internal/shift"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

func TestMain(m *testing.M) { os.Exit(meshbin.Main(m)) }

func requireMesh(t *testing.T) string {
	t.Helper()
	meshbin.Require(t)
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: prometheus is not installed (apt-get install --no-install-recommends prometheus, or scripts/setup.sh)")
	}
	return prom
}

const routing = `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: worker-destination-rule
spec:
  host: worker-service
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
  subsets:
  - name: primary
    labels:
      cluster-type: primary-cluster
  - name: burst
    labels:
      cluster-type: burst-cluster
`

// startPrometheus scrapes the sidecars' /stats/prometheus every second.
func startPrometheus(t *testing.T, bin string, targets []string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: sidecars
  metrics_path: /stats/prometheus
  static_configs:
  - targets: [%s]
`, strings.Join(quoted, ", "))), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
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
	for deadline := time.Now().Add(30 * time.Second); ; {
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

// load calls the worker service from the front end's namespace (through
// its sidecar) at the rate it is set to, and counts who answered.
type load struct {
	rate    atomic.Int64 // milli-requests per second
	mu      sync.Mutex
	answers map[string]int
}

func (l *load) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.answers
	l.answers = map[string]int{}
	return a
}

func (l *load) run(ctx context.Context, client *http.Client, url string) {
	next := time.Now()
	for ctx.Err() == nil {
		r := float64(l.rate.Load()) / 1000
		if r <= 0 {
			time.Sleep(50 * time.Millisecond)
			next = time.Now()
			continue
		}
		next = next.Add(time.Duration(float64(time.Second) / r))
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if d < -time.Second {
			next = time.Now() // fell behind: do not burst to catch up
		}
		go func() {
			resp, err := client.Get(url)
			name := "error"
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				name = strings.TrimSpace(strings.TrimPrefix(string(b), "this is "))
			}
			l.mu.Lock()
			l.answers[name]++
			l.mu.Unlock()
		}()
	}
}

// TestBurstWatcherOnLocalMesh is seed 004's last step on a real mesh: the
// front end calls worker-service through its sidecar; the workers'
// sidecars report istio_requests_total{reporter="destination",...}; a real
// Prometheus scrapes them; `shift` rewrites the VirtualService in the
// config dir trellisd watches, and the front end's calls move to the
// burst worker above 15 req/s and back to primary below 10 req/s.
func TestBurstWatcherOnLocalMesh(t *testing.T) {
	spec := &local.Spec{
		Namespace: "default",
		Services: []local.Service{{
			Name: "worker-service", Ports: []local.ServicePort{{Name: "http", Port: 80, TargetPort: 8081}},
			Selector: map[string]string{"app": "worker"},
		}},
		Workloads: []local.Workload{
			{Name: "frontend-deployment", Labels: map[string]string{"app": "frontend"}},
			{Name: "worker-primary", Labels: map[string]string{"app": "worker", "cluster-type": "primary-cluster"},
				Command: []string{"TRELLIS", "demoapp", "--name", "primary", "--listen", ":8081"}},
			{Name: "worker-burst", Labels: map[string]string{"app": "worker", "cluster-type": "burst-cluster"},
				Command: []string{"TRELLIS", "demoapp", "--name", "burst", "--listen", ":8081"}},
		},
	}
	burstWatcher(t, spec, local.Options{
		Prefix:    "t6s",
		Subnet:    netip.MustParsePrefix("10.233.0.0/24"),
		VIPSubnet: netip.MustParsePrefix("10.233.1.0/24"),
	}, nil, nil)
}

// crossNetwork is Istio's expose-services Gateway for the east-west
// gateways.
const crossNetwork = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
`

// TestBurstWatcherAcrossNetworks is the same with the burst worker on
// another network (local mode's two bridges, no route between them): the
// burst calls go through network2's east-west gateway, whose SNI chain
// carries bytes only while shift has the traffic on burst.
func TestBurstWatcherAcrossNetworks(t *testing.T) {
	spec := &local.Spec{
		Namespace: "default",
		Networks:  []local.Network{{Name: "network1", Subnet: "10.186.4.0/24"}, {Name: "network2", Subnet: "10.187.4.0/24"}},
		Services: []local.Service{{
			Name: "worker-service", Ports: []local.ServicePort{{Name: "http", Port: 80, TargetPort: 8081}},
			Selector: map[string]string{"app": "worker"},
		}},
		Workloads: []local.Workload{
			{Name: "frontend-deployment", Network: "network1", Labels: map[string]string{"app": "frontend"}},
			{Name: "worker-primary", Network: "network1", Labels: map[string]string{"app": "worker", "cluster-type": "primary-cluster"},
				Command: []string{"TRELLIS", "demoapp", "--name", "primary", "--listen", ":8081"}},
			{Name: "worker-burst", Network: "network2", Labels: map[string]string{"app": "worker", "cluster-type": "burst-cluster"},
				Command: []string{"TRELLIS", "demoapp", "--name", "burst", "--listen", ":8081"}},
			{Name: "eastwest-network2", Network: "network2", EastWestGateway: true, Labels: map[string]string{"istio": "eastwestgateway"}},
		},
	}
	const chain = "tcp.outbound_.80_.burst_.worker-service.default.svc.cluster.local.downstream_cx_rx_bytes_total"
	var atBurst int
	burstWatcher(t, spec, local.Options{Prefix: "tsn", VIPSubnet: netip.MustParsePrefix("10.186.5.0/24")},
		map[string]string{"gateway.yaml": crossNetwork},
		func(m *local.Mesh, phase string) {
			n := gatewayStat(t, m, "eastwest-network2", chain)
			t.Logf("%s: network2's gateway received %d bytes on the burst chain", phase, n)
			switch phase {
			case "natural":
				if n != 0 {
					t.Fatalf("before any burst the gateway carried %d bytes", n)
				}
			case "burst":
				if n == 0 {
					t.Fatal("calls answered by burst, but not through network2's gateway")
				}
				atBurst = n
			case "natural again":
				// The last burst calls may still have been in flight when
				// the decision was taken; after that, nothing more.
				time.Sleep(2 * time.Second)
				again := gatewayStat(t, m, "eastwest-network2", chain)
				time.Sleep(2 * time.Second)
				if after := gatewayStat(t, m, "eastwest-network2", chain); after != again || again < atBurst {
					t.Fatalf("back on primary the gateway still carries burst bytes (%d, then %d)", again, after)
				}
			}
		})
}

// gatewayStat reads one counter of a workload's proxy admin API.
func gatewayStat(t *testing.T, m *local.Mesh, workload, name string) int {
	t.Helper()
	resp, err := m.HTTPClient(workload).Get("http://127.0.0.1:15000/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// burstWatcher runs the scenario on the spec's mesh; files go into the
// config dir first; check, when set, runs once the calls are answered
// by primary ("natural"), by burst ("burst"), and by primary again
// ("natural again").
func burstWatcher(t *testing.T, spec *local.Spec, opts local.Options, files map[string]string, check func(m *local.Mesh, phase string)) {
	promBin := requireMesh(t)
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		t.Fatal(err)
	}
	spec.ExpandCommand(bins.Trellis)
	plan, err := local.NewPlan(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	if check == nil {
		check = func(*local.Mesh, string) {}
	}
	state := t.TempDir()
	// The sidecars (uid 1337) read the published trust bundle under it:
	// with their certificates they use mesh mTLS, which the east-west
	// gateway routes by its SNI.
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(state, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	natural, err := os.ReadFile("../../../internal/shift/testdata/natural.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vsPath := filepath.Join(cfg, "worker-virtualservice.yaml")
	if err := os.WriteFile(vsPath, natural, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "worker-destination-rule.yaml"), []byte(routing), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := bins.MeshRunner(plan, cfg, state, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	m, err := r.Up(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	if err := m.WaitReady(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()

	var targets []string
	for _, name := range []string{"worker-primary", "worker-burst"} {
		w, _ := m.Workload(name)
		targets = append(targets, net.JoinHostPort(w.IP.String(), "15090"))
	}
	promURL := startPrometheus(t, promBin, targets)

	front, _ := m.Workload("frontend-deployment")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 32,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, front.Netns, network, addr)
		},
	}}
	var vip netip.Addr
	for _, s := range plan.Services {
		if s.Name == "worker-service" {
			vip = s.VIP
		}
	}
	l := &load{answers: map[string]int{}}
	lctx, lcancel := context.WithCancel(context.Background())
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() { defer lwg.Done(); l.run(lctx, client, "http://"+net.JoinHostPort(vip.String(), "80")+"/") }()
	t.Cleanup(func() { lcancel(); lwg.Wait() })

	// Traffic flows, all of it to primary (natural.yaml).
	l.rate.Store(3000)
	eventually(t, "calls answered by primary only", 30*time.Second, func() error {
		time.Sleep(time.Second)
		a := l.take()
		if a["primary"] == 0 || len(a) != 1 {
			return fmt.Errorf("answers %v", a)
		}
		return nil
	})
	check(m, "natural")

	sampler, err := shift.NewPrometheusSampler(promURL, shift.DefaultQuery("worker-service.default.svc.cluster.local", "frontend-deployment", 4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	decisions := make(chan shift.Decision, 4096)
	ctrl, err := shift.New(shift.Options{
		Sampler: sampler, Up: 15, Down: 10, Interval: 500 * time.Millisecond,
		VirtualService: shift.Ref{Namespace: "default", Name: "worker-virtual-service"},
		BurstSubset:    "burst", NaturalSubset: "primary",
		Applier: &shift.FileApplier{Dir: cfg},
		OnDecision: func(d shift.Decision) {
			decisions <- d
			if d.Changed || d.Err != nil {
				t.Logf("%s", d)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- ctrl.Run(cctx) }()
	t.Cleanup(func() { ccancel(); <-cdone })

	waitFor := func(what string, ok func(shift.Decision) bool) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case d := <-decisions:
				if d.Err == nil && ok(d) {
					return
				}
			case <-timeout:
				t.Fatalf("%s: not seen within 60 s", what)
			}
		}
	}
	waitFor("a rate from the sidecars' metrics", func(d shift.Decision) bool { return d.Rate > 1 && d.To == shift.Natural })

	// Above 15 req/s: the file flips and the calls move to burst.
	l.rate.Store(25000)
	waitFor("shift to burst at 25 req/s", func(d shift.Decision) bool { return d.Changed && d.To == shift.Burst })
	if b, _ := os.ReadFile(vsPath); !strings.Contains(string(b), "subset: burst\n        port:\n          number: 80\n      weight: 100") {
		t.Fatalf("config file after burst:\n%s", b)
	}
	eventually(t, "calls answered by burst only", 30*time.Second, func() error {
		time.Sleep(time.Second)
		if a := l.take(); a["burst"] == 0 || len(a) != 1 {
			return fmt.Errorf("answers %v", a)
		}
		return nil
	})
	check(m, "burst")

	// Between the thresholds: no change.
	l.rate.Store(12500)
	in := 0
	waitFor("8 samples in a row between 10 and 15 req/s", func(d shift.Decision) bool {
		if d.Rate > 10 && d.Rate < 15 {
			in++
		} else {
			in = 0
		}
		return in >= 8
	})
	if ctrl.State() != shift.Burst {
		t.Fatalf("state at 12.5 req/s after a burst: got %s, want burst", ctrl.State())
	}

	// Below 10 req/s: back to primary.
	l.rate.Store(4000)
	waitFor("shift to natural at 4 req/s", func(d shift.Decision) bool { return d.Changed && d.To == shift.Natural })
	eventually(t, "calls answered by primary only again", 30*time.Second, func() error {
		time.Sleep(time.Second)
		if a := l.take(); a["primary"] == 0 || len(a) != 1 {
			return fmt.Errorf("answers %v", a)
		}
		return nil
	})
	check(m, "natural again")
}

func eventually(t *testing.T, what string, limit time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}
