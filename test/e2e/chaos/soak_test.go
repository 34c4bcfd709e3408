package chaos

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Case 7 runs on its own mesh and subnet (10.182.0.0/24, VIPs
// 10.182.1.0/24), with the same spec as TestChaos. Nothing it creates is
// shared with the other meshes (namespaces, veths and the bridge carry
// its prefix, trellisd listens on its bridge address, the interception
// rules are inside its namespaces), so the long run needs no namespace
// lock.
const (
	soakPrefix  = "t82"
	soakSubnetX = 182
)

var (
	soakFor = flag.Duration("chaos.soak", 60*time.Second, "how long TestChaosSoak runs its load and config churn (by hand: 30m)")
	soakRPS = flag.Int("chaos.soakrps", 500, "requests per second of each of TestChaosSoak's loads (HTTP/1.1 and gRPC)")
)

// soakChurnEvery is how often the soak changes the config.
const soakChurnEvery = 10 * time.Second

// Flatness bounds of the soak (see flat). The first window starts after
// the warm-up: connection pools, TLS sessions, the proxies' per-cluster
// state and the Go heap grow to their working size in the first seconds
// of load, which is not a leak.
//
// RSS: the mean of the last fifth of the samples may exceed the mean of
// the first fifth by at most soakRSSSlack, or soakRSSPct of it if that is
// more. Go's heap goal is twice the live heap (GOGC=100) and the runtime
// returns freed pages to the OS lazily, so a process with a 10-20 MiB live
// heap swings by several MiB between two collections; averaging a window
// of samples and allowing 8 MiB keeps that noise below the bound. A leak
// breaks it: in the 30-minute run the two windows are about 20 minutes
// and 1.2 million requests apart, so 8 MiB is 7 bytes per request or
// 70 KiB per config change; in the 60-second CI run (about 30 s apart) it
// is ~250 bytes per request, which a leaked goroutine (2 KiB stack at
// least), connection or buffer per request exceeds.
//
// Goroutines: the median of the last fifth may exceed the median of the
// first fifth by at most soakGoroutineSlack, or soakGoroutinePct of it.
// The counts follow the load's concurrency (each downstream and upstream
// connection has its goroutines, and the open-loop load opens more
// connections when latency spikes), which the median of a window
// smooths; a leak of one goroutine per request is thousands per second,
// and one per config change is 120 in the long run's window distance.
const (
	soakRSSSlack       = 8 << 20 // bytes
	soakRSSPct         = 20
	soakGoroutineSlack = 40
	soakGoroutinePct   = 15
)

// soakTimes are the soak's warm-up and sampling interval for a duration:
// a sixth (at least 15 s) of warm-up, 60 samples (at least 2 s apart).
func soakTimes(d time.Duration) (warmup, every time.Duration) {
	return max(15*time.Second, d/6), max(2*time.Second, d/60)
}

// TestChaosSoak is case 7: a soak. HTTP/1.1 and gRPC load at
// -chaos.soakrps each (default 500) for -chaos.soak (default 60 s, the CI
// mode; 30m by hand) with a config change every 10 s, cycling
// VirtualService weights, header matches and timeouts/retries and
// DestinationRule subset edits (renamed subsets with the route moved onto
// them, an extra subset, per-subset load-balancer policies). It samples
// the client's and a server's sidecar and trellisd (VmRSS from /proc,
// goroutines and heap from the proxies' admin server.* gauges and
// trellisd's go_* metrics) and prints the series; it asserts no failed
// request of either load, no config rejected by the client's sidecar,
// every change applied, and that RSS and goroutines stay flat (see the
// bounds above).
func TestChaosSoak(t *testing.T) {
	requireMesh(t)
	total := *soakFor
	warmup, every := soakTimes(total)
	if total < warmup+5*every {
		t.Fatalf("-chaos.soak %s is too short: the warm-up is %s and the flatness check needs samples after it", total, warmup)
	}
	ms := startMeshOn(t, soakPrefix, soakSubnetX)
	ms.apply("bill", baseConfig())
	front, _ := ms.m.Workload("front")
	url := "http://" + ms.m.Plan.Services[0].VIP.String() + ":9999/"
	grpcAddr := fmt.Sprintf("%s:%d", ms.m.Plan.Services[0].VIP, grpcPort)
	ms.waitAnswers(front.Netns, url, "this is bill-service-v1", "this is bill-service-v2")
	ms.waitGRPCAnswers(front.Netns, grpcAddr, "this is bill-service-v1", "this is bill-service-v2")
	metricsURL := "http://" + net.JoinHostPort(ms.m.Plan.HostIP.String(), "15014") + "/metrics"
	t.Logf("soak: %s of %d rps HTTP/1.1 GET %s and %d rps gRPC unary calls to %s from %s through both sidecars; a config change every %s; warm-up %s; a sample every %s",
		total, *soakRPS, url, *soakRPS, grpcAddr, front.Netns, soakChurnEvery, warmup, every)

	procs := []soakProc{
		{name: "proxy front", pid: ms.process("proxy", "front").PID, stats: ms.proxyRuntime("front")},
		{name: "proxy bill-v1", pid: ms.process("proxy", "bill-v1").PID, stats: ms.proxyRuntime("bill-v1")},
		{name: "trellisd", pid: ms.trellisd, stats: trellisdRuntime(metricsURL)},
	}
	flags0, gflags0, xds0 := ms.flags("http"), ms.flags("grpc"), ms.xdsUpdates("front")

	l := startLoad(front.Netns, url, *soakRPS)
	g, err := startGRPCLoad(front.Netns, grpcAddr, *soakRPS)
	if err != nil {
		t.Fatal(err)
	}
	var hs, gs soakTally
	var samples []soakSample
	start := time.Now()
	next, churn, edits := start.Add(every), start.Add(soakChurnEvery), 0
	for {
		now := time.Now()
		if now.Sub(start) >= total {
			break
		}
		if !now.Before(churn) {
			ms.apply("bill", soakEdit(edits))
			edits++
			churn = churn.Add(soakChurnEvery)
		}
		if !now.Before(next) {
			if name, exited := ms.m.Exited(); exited {
				t.Fatalf("a mesh process exited during the soak: %s", name)
			}
			s := soakSample{at: now.Sub(start)}
			s.http, s.grpc = hs.add(l.take()), gs.add(g.take())
			for _, p := range procs {
				s.procs = append(s.procs, p.read(t))
			}
			samples = append(samples, s)
			next = next.Add(every)
		}
		time.Sleep(time.Until(minTime(next, churn)))
	}
	hs.add(l.finish())
	gs.add(g.finish())
	flags, proxyBad := flagDelta(flags0, ms.flags("http"))
	gflags, gproxyBad := flagDelta(gflags0, ms.flags("grpc"))
	xds1 := ms.xdsUpdates("front")

	t.Logf("soak series (t: interval HTTP/1.1 sent/failed p99, gRPC sent/failed p99; per process RSS MiB / goroutines / heap MiB):\n%s", soakSeries(procs, samples))
	t.Logf("soak: %d config changes; the client sidecar's xDS updates: %d accepted, %d rejected", edits, xds1.accepted-xds0.accepted, xds1.rejected-xds0.rejected)
	t.Logf("soak: HTTP/1.1 %s\n  client sidecar (code flags): %s\nsoak: gRPC %s\n  client sidecar (code flags grpc-status): %s", &hs, flags, &gs, gflags)
	t.Logf("soak: start / middle / end:\n%s", soakMilestones(procs, samples))

	if hs.failed > 0 || proxyBad > 0 {
		t.Errorf("soak lost HTTP/1.1 requests: %d failed at the client, %d non-200 at the client sidecar; want 0", hs.failed, proxyBad)
	}
	if gs.failed > 0 || gproxyBad > 0 {
		t.Errorf("soak lost gRPC calls: %d failed at the client, %d not 200/grpc-status 0 at the client sidecar; want 0", gs.failed, gproxyBad)
	}
	if r := xds1.rejected - xds0.rejected; r > 0 {
		t.Errorf("the client sidecar rejected %d xDS updates during the churn; want 0", r)
	}
	// Every change alters the routes (RDS, or VHDS by default) or the clusters (or both) the
	// client's sidecar gets: fewer accepted updates than changes means the
	// churn did not reach it.
	if a := xds1.accepted - xds0.accepted; a < edits {
		t.Errorf("the client sidecar accepted %d CDS/RDS/VHDS updates for %d config changes; want at least one per change", a, edits)
	}
	for i, p := range procs {
		var post []soakSample
		for _, s := range samples {
			if s.at >= warmup {
				post = append(post, s)
			}
		}
		if err := flat(post, i); err != nil {
			if *soakFor < 10*time.Minute {
				// A minute is too short to tell a leak from the in-flight
				// requests' goroutines following the latency of a busy
				// machine: the short (CI) mode reports, the long one asserts.
				t.Logf("%s: %v (not asserted in a soak shorter than 10 minutes)", p.name, err)
				continue
			}
			t.Errorf("%s: %v", p.name, err)
		}
	}
}

// soakEdit is the i-th config change of the soak, a cycle of six: the
// VirtualService edits of case 1 (weights, a header match, timeouts and
// retries) on subsets v1/v2, then DestinationRule edits: both subsets
// renamed and the route moved onto the new names in the same write (as
// case 4), a third subset added, and load-balancer policies set per
// subset.
func soakEdit(i int) string {
	base := dr("v1", "v1", "v2", "v2")
	w := (i * 29) % 101
	switch i % 6 {
	case 0, 1, 2:
		return base + "---\n" + edit(i%3+3*(i/6))
	case 3:
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		return dr(a, "v1", b, "v2") + "---\n" + vs(split(host, a, w, b))
	case 4:
		return dr("v1", "v1", "v2", "v2", fmt.Sprintf("extra%d", i), "v1") + "---\n" + vs(split(host, "v1", w, "v2"))
	default:
		lbs := []string{"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"}
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bill-service, namespace: %s}
spec:
  host: %s
  trafficPolicy: {loadBalancer: {simple: %s}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: %s}}
  - name: v2
    labels: {version: v2}
---
`, namespace, host, lbs[(i/6)%3], lbs[(i/6+1)%3]) + vs(split(host, "v1", w, "v2"))
	}
}

// take returns the outcomes recorded since the last take and forgets
// them, so a long run holds only one interval's results.
func (l *load) take() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := l.results
	l.results = nil
	return rs
}

// soakTally adds up one load's outcomes over the whole soak.
type soakTally struct {
	sent, failed int
	byCode       map[string]int
	latencies    []time.Duration // of the answered requests
}

// soakInterval is one load's outcomes in one sampling interval.
type soakInterval struct {
	sent, failed int
	p99          time.Duration
}

func (s *soakTally) add(rs []result) soakInterval {
	if s.byCode == nil {
		s.byCode = map[string]int{}
	}
	var in soakInterval
	var lat []time.Duration
	for _, r := range rs {
		in.sent++
		if !r.ok() {
			in.failed++
			s.byCode[r.key()]++
			continue
		}
		lat = append(lat, r.latency)
	}
	s.sent += in.sent
	s.failed += in.failed
	s.latencies = append(s.latencies, lat...)
	in.p99 = percentile(lat, 99)
	return in
}

func (s *soakTally) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, failed %d", s.sent, s.failed)
	for _, k := range sortedKeys(s.byCode) {
		fmt.Fprintf(&b, " [%s: %d]", k, s.byCode[k])
	}
	fmt.Fprintf(&b, "; p50 %s p99 %s p99.9 %s", ms(percentile(s.latencies, 50)), ms(percentile(s.latencies, 99)), ms(percentile(s.latencies, 99.9)))
	return b.String()
}

// percentile sorts d and returns its p-th percentile (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(float64(len(d))*p/100))]
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// soakProc is a process the soak samples: its VmRSS from /proc, its
// goroutines and heap from stats.
type soakProc struct {
	name  string
	pid   int
	stats func() (goroutines, heap int, err error)
}

// procSample is one reading of a soakProc; -1 when it could not be read.
type procSample struct {
	rss, goroutines, heap int // bytes, count, bytes
}

func (p soakProc) read(t *testing.T) procSample {
	s := procSample{rss: rss(p.pid) * 1024, goroutines: -1, heap: -1}
	if s.rss < 0 {
		t.Errorf("%s (pid %d): no VmRSS", p.name, p.pid)
	}
	g, h, err := p.stats()
	if err != nil {
		t.Errorf("%s: %v", p.name, err)
		return s
	}
	s.goroutines, s.heap = g, h
	return s
}

// soakSample is one sampling instant: the loads' last interval and each
// process's reading (in the order of the soak's procs).
type soakSample struct {
	at         time.Duration
	http, grpc soakInterval
	procs      []procSample
}

// proxyRuntime reads a sidecar's server.goroutines and
// server.memory_allocated (the Go heap in use) from its admin.
func (ms *mesh) proxyRuntime(workload string) func() (int, int, error) {
	return func() (int, int, error) {
		v, err := ms.adminStats(workload, `^server\.(goroutines|memory_allocated)$`)
		if err != nil {
			return -1, -1, err
		}
		g, okg := v["server.goroutines"]
		h, okh := v["server.memory_allocated"]
		if !okg || !okh {
			return -1, -1, fmt.Errorf("%s admin /stats: no server.goroutines or server.memory_allocated in %v", workload, v)
		}
		return int(g), int(h), nil
	}
}

// adminStats are a sidecar's /stats lines matching filter, by name.
func (ms *mesh) adminStats(workload, filter string) (map[string]float64, error) {
	resp, err := ms.m.HTTPClient(workload).Get("http://127.0.0.1:15000/stats?filter=" + url.QueryEscape(filter))
	if err != nil {
		return nil, fmt.Errorf("%s admin: %w", workload, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// xdsCounts are a sidecar's accepted and rejected CDS and RDS updates.
type xdsCounts struct{ accepted, rejected int }

var xdsUpdateStat = regexp.MustCompile(`\.(cds|rds|vhds)\.update_(success|rejected)$`)

func (ms *mesh) xdsUpdates(workload string) xdsCounts {
	ms.t.Helper()
	v, err := ms.adminStats(workload, `\.(cds|rds|vhds)\.update_(success|rejected)$`)
	if err != nil {
		ms.t.Fatal(err)
	}
	var c xdsCounts
	for name, n := range v {
		m := xdsUpdateStat.FindStringSubmatch(name)
		switch {
		case m == nil:
		case m[2] == "success":
			c.accepted += int(n)
		default:
			c.rejected += int(n)
		}
	}
	if len(v) == 0 {
		ms.t.Fatalf("%s admin /stats: no CDS/RDS/VHDS update counters", workload)
	}
	return c
}

// trellisdRuntime reads trellisd's go_goroutines and
// go_memstats_heap_alloc_bytes from its Prometheus metrics.
func trellisdRuntime(url string) func() (int, int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	return func() (int, int, error) {
		resp, err := c.Get(url)
		if err != nil {
			return -1, -1, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return -1, -1, err
		}
		g, h := -1, -1
		for _, line := range strings.Split(string(b), "\n") {
			name, v, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			switch name {
			case "go_goroutines":
				g = int(f)
			case "go_memstats_heap_alloc_bytes":
				h = int(f)
			}
		}
		if g < 0 || h < 0 {
			return -1, -1, fmt.Errorf("%s: no go_goroutines or go_memstats_heap_alloc_bytes", url)
		}
		return g, h, nil
	}
}

// flat checks process i's samples after the warm-up against the soak's
// bounds: the last fifth against the first fifth, the RSS by mean and the
// goroutines by median.
func flat(post []soakSample, i int) error {
	if len(post) < 5 {
		return fmt.Errorf("%d samples after the warm-up; need 5 to compare the first and last fifth", len(post))
	}
	k := len(post) / 5
	first, last := post[:k], post[len(post)-k:]
	col := func(ss []soakSample, f func(procSample) int) []float64 {
		out := make([]float64, len(ss))
		for j, s := range ss {
			out[j] = float64(f(s.procs[i]))
		}
		return out
	}
	var errs []string
	r0, r1 := mean(col(first, func(p procSample) int { return p.rss })), mean(col(last, func(p procSample) int { return p.rss }))
	if lim := max(soakRSSSlack, r0*soakRSSPct/100); r1-r0 > lim {
		errs = append(errs, fmt.Sprintf("RSS grew from a mean of %.1f MiB (first %d samples after the warm-up) to %.1f MiB (last %d): +%.1f MiB > the %.1f MiB bound",
			r0/(1<<20), k, r1/(1<<20), k, (r1-r0)/(1<<20), lim/(1<<20)))
	}
	g0, g1 := median(col(first, func(p procSample) int { return p.goroutines })), median(col(last, func(p procSample) int { return p.goroutines }))
	if g0 < 0 || g1 < 0 {
		errs = append(errs, "goroutines not read")
	} else if lim := max(soakGoroutineSlack, g0*soakGoroutinePct/100); g1-g0 > lim {
		errs = append(errs, fmt.Sprintf("goroutines grew from a median of %.0f (first %d samples after the warm-up) to %.0f (last %d): +%.0f > the bound %.0f",
			g0, k, g1, k, g1-g0, lim))
	}
	if errs != nil {
		return fmt.Errorf("not flat: %s", strings.Join(errs, "; "))
	}
	return nil
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func mib(b int) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// soakSeries renders the samples, one line each.
func soakSeries(procs []soakProc, samples []soakSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %7s | %-24s | %-24s", "t", "HTTP/1.1", "gRPC")
	for _, p := range procs {
		fmt.Fprintf(&b, " | %-18s", p.name)
	}
	b.WriteString("\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "  %7s | %5d/%-3d p99 %9s | %5d/%-3d p99 %9s", s.at.Round(time.Second), s.http.sent, s.http.failed, ms(s.http.p99), s.grpc.sent, s.grpc.failed, ms(s.grpc.p99))
		for _, p := range s.procs {
			fmt.Fprintf(&b, " | %5s / %4d / %5s", mib(p.rss), p.goroutines, mib(p.heap))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// soakMilestones renders each process's first, middle and last sample.
func soakMilestones(procs []soakProc, samples []soakSample) string {
	if len(samples) == 0 {
		return "  no samples"
	}
	var b strings.Builder
	picks := []soakSample{samples[0], samples[len(samples)/2], samples[len(samples)-1]}
	for i, p := range procs {
		fmt.Fprintf(&b, "  %-14s", p.name)
		for _, s := range picks {
			fmt.Fprintf(&b, " t=%s RSS %s MiB, %d goroutines, heap %s MiB;", s.at.Round(time.Second), mib(s.procs[i].rss), s.procs[i].goroutines, mib(s.procs[i].heap))
		}
		b.WriteString("\n")
	}
	return b.String()
}
