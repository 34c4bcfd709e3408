package dashboard

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets []Bucket
		want    float64
	}{
		{"empty", 0.99, nil, math.NaN()},
		{"no +Inf bucket", 0.5, []Bucket{{1, 1}}, math.NaN()},
		{"zero count", 0.99, []Bucket{{1, 0}, {inf, 0}}, math.NaN()},
		// 100 observations in (10,25]: p50 is halfway.
		{"interpolated", 0.5, []Bucket{{10, 0}, {25, 100}, {inf, 100}}, 17.5},
		// First bucket's lower bound is 0.
		{"first bucket", 0.5, []Bucket{{10, 100}, {inf, 100}}, 5},
		// Rank in +Inf: the highest finite bound.
		{"in +Inf", 0.99, []Bucket{{10, 50}, {inf, 100}}, 10},
		// 990 of 1000 at most 5ms, 10 in (250,500]: p99 is 5, p99.5 in the slow bucket.
		{"p99 edge", 0.99, []Bucket{{1, 0}, {5, 990}, {250, 990}, {500, 1000}, {inf, 1000}}, 5},
		{"p99.5", 0.995, []Bucket{{1, 0}, {5, 990}, {250, 990}, {500, 1000}, {inf, 1000}}, 375},
		{"unsorted input", 0.5, []Bucket{{inf, 100}, {25, 100}, {10, 0}}, 17.5},
		// A count below the previous one is raised to it: rank 50 of 100
		// falls in the first bucket, 10*50/60.
		{"non-monotonic counts", 0.5, []Bucket{{10, 60}, {25, 40}, {inf, 100}}, 10 * 50.0 / 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Quantile(tc.q, tc.buckets)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// meshCalls records calls as the proxies of a front end and two
// bill-service versions would: the caller's sidecar (reporter=source) and
// each callee's (reporter=destination, over mutual TLS).
type meshCalls struct {
	front, dest *telemetry.Recorder
	src, v1, v2 *telemetry.Key
	in1, in2    *telemetry.Key
}

func newMeshCalls() *meshCalls {
	in := &telemetry.Interner{}
	front := in.Peer(telemetry.Peer{Workload: "front-tomcat-v1", Namespace: "istio-demo", App: "front-tomcat", Version: "v1"})
	v1 := in.Peer(telemetry.Peer{Workload: "bill-service-v1", Namespace: "istio-demo", App: "bill-service", Version: "v1"})
	v2 := in.Peer(telemetry.Peer{Workload: "bill-service-v2", Namespace: "istio-demo", App: "bill-service", Version: "v2"})
	svc := in.Service(telemetry.Service{Host: "bill-service.istio-demo.svc.cluster.local", Name: "bill-service", Namespace: "istio-demo"})
	return &meshCalls{
		front: telemetry.NewRecorder(in), dest: telemetry.NewRecorder(in),
		v1:  &telemetry.Key{Reporter: telemetry.Source, Source: front, Destination: v1, Service: svc, Protocol: "http", Security: "unknown"},
		v2:  &telemetry.Key{Reporter: telemetry.Source, Source: front, Destination: v2, Service: svc, Protocol: "http", Security: "unknown"},
		in1: &telemetry.Key{Reporter: telemetry.Destination, Source: front, Destination: v1, Service: svc, Protocol: "http", Security: "mutual_tls"},
		in2: &telemetry.Key{Reporter: telemetry.Destination, Source: front, Destination: v2, Service: svc, Protocol: "http", Security: "mutual_tls"},
	}
}

// call records n calls on both sides.
func (m *meshCalls) call(n int, v2 bool, code int, flags string, ms float64) {
	out, in := m.v1, m.in1
	if v2 {
		out, in = m.v2, m.in2
	}
	for range n {
		m.front.Request(out, code, -1, flags, ms, 0, 10)
		if flags == "" {
			m.dest.Request(in, code, -1, "", ms, 0, 10)
		}
	}
}

func scrapeText(t *testing.T, r *telemetry.Recorder) map[Key]*counters {
	t.Helper()
	var b bytes.Buffer
	if err := r.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	c, err := ParseExposition(&b)
	if err != nil {
		t.Fatalf("parse the proxy's exposition: %v\n%s", err, b.String())
	}
	return c
}

func windowOf(t *testing.T, m *meshCalls, before func(), during func(), dt time.Duration) []Series {
	before()
	t0 := time.Unix(1000, 0)
	a := []sample{{at: t0, series: scrapeText(t, m.front)}, {at: t0, series: scrapeText(t, m.dest)}}
	during()
	b := []sample{{at: t0.Add(dt), series: scrapeText(t, m.front)}, {at: t0.Add(dt), series: scrapeText(t, m.dest)}}
	return append(delta(a[0], b[0]), delta(a[1], b[1])...)
}

func edge(t *testing.T, g Graph, from, to string) Edge {
	t.Helper()
	for _, e := range g.Edges {
		if e.Source == from && e.Target == to {
			return e
		}
	}
	t.Fatalf("no edge %s -> %s in %+v", from, to, g.Edges)
	return Edge{}
}

func TestGraphFromProxyMetrics(t *testing.T) {
	m := newMeshCalls()
	// Calls before the window must not count.
	series := windowOf(t, m, func() { m.call(500, false, 200, "", 3) }, func() {
		m.call(900, false, 200, "", 3)
		m.call(90, true, 200, "", 3)
		m.call(10, true, 503, "", 300)
	}, 10*time.Second)
	g := BuildGraph(series, nil, nil)
	front, svc := workloadID("istio-demo", "front-tomcat-v1"), serviceID("bill-service.istio-demo.svc.cluster.local")
	out := edge(t, g, front, svc)
	if math.Abs(out.RPS-100) > 1e-9 || out.Reporter != "source" {
		t.Errorf("front -> bill-service: got %v req/s reported by %s, want 100 by source", out.RPS, out.Reporter)
	}
	if math.Abs(out.ErrorRate-0.01) > 1e-9 {
		t.Errorf("front -> bill-service: got error rate %v, want 0.01", out.ErrorRate)
	}
	// 990 of 1000 calls took 3ms (bucket (1,5]); the rank 990 lands on its top.
	if out.P99 == nil || math.Abs(*out.P99-5) > 1e-9 {
		t.Errorf("front -> bill-service: got p99 %v, want 5", out.P99)
	}
	if !out.MTLS {
		t.Errorf("front -> bill-service: want the lock (the destinations saw mutual_tls)")
	}
	e1 := edge(t, g, svc, workloadID("istio-demo", "bill-service-v1"))
	e2 := edge(t, g, svc, workloadID("istio-demo", "bill-service-v2"))
	if e1.Reporter != "destination" || math.Abs(e1.RPS-90) > 1e-9 || e1.ErrorRate != 0 || !e1.MTLS {
		t.Errorf("bill-service -> v1: got %+v, want 90 req/s by destination, no errors, mTLS", e1)
	}
	if math.Abs(e2.RPS-10) > 1e-9 || math.Abs(e2.ErrorRate-0.1) > 1e-9 {
		t.Errorf("bill-service -> v2: got %v req/s, error rate %v; want 10, 0.1", e2.RPS, e2.ErrorRate)
	}
	// 9 of 10 v2 calls in (1,5], 1 in (250,500]: p99 is in the slow bucket.
	if e2.P99 == nil || *e2.P99 <= 250 || *e2.P99 > 500 {
		t.Errorf("bill-service -> v2: got p99 %v, want within (250,500]", e2.P99)
	}
}

// TestGraphUnattributedCalls: calls the caller's proxy recorded without a
// destination service (a fault abort before any cluster was chosen) show
// as an edge to "unknown destination".
func TestGraphUnattributedCalls(t *testing.T) {
	series := []Series{{Key: Key{Reporter: "source", SourceWorkload: "front", SourceNamespace: "ns", DestinationService: "unknown", Code: "500", Flags: "FI"}, Rate: 5, Requests: 50}}
	g := BuildGraph(series, nil, nil)
	e := edge(t, g, workloadID("ns", "front"), unknownDestID)
	if e.RPS != 5 || e.ErrorRate != 1 || e.Reporter != "source" {
		t.Errorf("got %+v, want 5 req/s, all 5xx, reported by the source", e)
	}
}

func TestDeltaCounterReset(t *testing.T) {
	k := Key{Reporter: "source", DestinationService: "a", Code: "200"}
	inf := math.Inf(1)
	old := sample{at: time.Unix(0, 0), series: map[Key]*counters{k: {requests: 500, duration: []Bucket{{5, 500}, {inf, 500}}}}}
	cur := sample{at: time.Unix(10, 0), series: map[Key]*counters{k: {requests: 20, duration: []Bucket{{5, 20}, {inf, 20}}}}}
	got := delta(old, cur)
	if len(got) != 1 || got[0].Requests != 20 || got[0].Rate != 2 || got[0].Duration[1].Count != 2 {
		t.Errorf("after a restart: got %+v, want 20 requests, 2/s, +Inf bucket 2/s", got)
	}
}

// TestScraperWindow scrapes a real HTTP endpoint serving a proxy's
// exposition and keeps one window.
func TestScraperWindow(t *testing.T) {
	m := newMeshCalls()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/prometheus" {
			http.NotFound(w, r)
			return
		}
		m.front.WritePrometheus(w)
	}))
	defer srv.Close()
	now := time.Unix(1000, 0)
	proxies := []Proxy{{ID: "sidecar~127.0.0.1~front.istio-demo~istio-demo.svc.cluster.local", StatsAddress: strings.TrimPrefix(srv.URL, "http://")},
		{ID: "sidecar~127.0.0.2~gone.istio-demo~istio-demo.svc.cluster.local", StatsAddress: "127.0.0.1:1"}}
	o := &Options{Mesh: fakeMesh{proxies: proxies}, ScrapeInterval: 5 * time.Second, Window: 10 * time.Second, ScrapeTimeout: time.Second, ScrapeConcurrency: 2}
	s := newScraper(o)
	s.now = func() time.Time { return now }
	tick := func(calls int) {
		m.call(calls, false, 200, "", 3)
		s.scrapeAll(t.Context())
		now = now.Add(5 * time.Second)
	}
	tick(1000) // before: the base
	if series, _, _ := s.Traffic(t.Context()); len(series) != 0 {
		t.Errorf("one scrape: got %d series, want none (a rate needs two)", len(series))
	}
	tick(50)
	tick(50)
	tick(50) // t=15: the window (10s) keeps t=5,10,15
	series, st, _ := s.Traffic(t.Context())
	var rate float64
	for _, se := range series {
		rate += se.Rate
	}
	if math.Abs(rate-10) > 1e-9 { // 100 calls in the last 10 s
		t.Errorf("got %v req/s over the window, want 10", rate)
	}
	if len(st) != 2 || st[0].Error != "" || st[1].Error == "" {
		t.Errorf("scrape status: got %+v, want the front end fine and the second proxy failing", st)
	}
}

type fakeMesh struct {
	proxies []Proxy
	cfg     *config.Snapshot
	reg     *registry.Snapshot
	errs    map[string][]string
}

func (f fakeMesh) Proxies() []Proxy                                       { return f.proxies }
func (f fakeMesh) Config() *config.Snapshot                               { return f.cfg }
func (f fakeMesh) Registry() *registry.Snapshot                           { return f.reg }
func (f fakeMesh) FileIssues() (map[string][]string, map[string][]string) { return f.errs, nil }

func seedConfig(t *testing.T) *config.Snapshot {
	t.Helper()
	var rs []*config.Resource
	for _, f := range []string{"../demo/scenarios/virtual-service.yaml", "../demo/scenarios/destination-rule.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := config.Parse(b, f)
		if err != nil || len(res.Errors) > 0 {
			t.Fatalf("%s: %v %v", f, err, res.Errors)
		}
		rs = append(rs, res.Resources...)
	}
	return config.NewSnapshot(rs)
}

// TestServiceDetailSplit: the seed's 90/10 VirtualService as configured,
// and the split the destinations' metrics measured, by subset.
func TestServiceDetailSplit(t *testing.T) {
	m := newMeshCalls()
	series := windowOf(t, m, func() {}, func() {
		m.call(880, false, 200, "", 3)
		m.call(120, true, 200, "", 3)
		m.call(5, true, 500, "FI", 0) // aborted by the caller's sidecar
	}, 10*time.Second)
	host := "bill-service.istio-demo.svc.cluster.local"
	reg := &registry.Snapshot{
		Services: []*registry.Service{{Hostname: host, Name: "bill-service", Namespace: "istio-demo", Ports: []registry.Port{{Name: "http", Number: 9999}}}},
		Endpoints: map[string][]*registry.Endpoint{host: {
			{Service: host, Address: "10.244.0.3", Workload: "bill-service-v1", Namespace: "istio-demo", Labels: map[string]string{"version": "v1"}},
			{Service: host, Address: "10.244.0.4", Workload: "bill-service-v2", Namespace: "istio-demo", Labels: map[string]string{"version": "v2"}},
		}},
	}
	proxies := []Proxy{{ID: "sidecar~10.244.0.3~bill-service-v1.istio-demo~istio-demo.svc.cluster.local", Workload: "bill-service-v1", Namespace: "istio-demo",
		IPs: []string{"10.244.0.3"}, Status: server.ProxyStatus{Types: []server.TypeStatus{
			{Type: "CDS", SentNonce: "2", AckedNonce: "2"},
			{Type: "LDS", SentNonce: "3", AckedNonce: "2", LastNack: &server.Nack{Nonce: "3", Message: "listener 0.0.0.0_80: bad filter"}},
		}}}}
	d, err := New(Options{Mesh: fakeMesh{proxies: proxies, cfg: seedConfig(t), reg: reg, errs: map[string][]string{"cfg/broken.yaml": {"cfg/broken.yaml#1: yaml: line 3: bad indentation"}}}})
	if err != nil {
		t.Fatal(err)
	}
	d.latest.Store(&traffic{series: series})
	v, _ := d.view()
	det := v.Detail("istio-demo", "bill-service")
	if det == nil {
		t.Fatal("no detail for istio-demo/bill-service")
	}
	if len(det.VirtualServices) != 1 || len(det.DestinationRules) != 1 {
		t.Errorf("got %d VirtualServices and %d DestinationRules, want 1 and 1", len(det.VirtualServices), len(det.DestinationRules))
	}
	want := []SplitShare{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}}
	if len(det.Split.Configured) != 2 || det.Split.Configured[0] != want[0] || det.Split.Configured[1] != want[1] {
		t.Errorf("configured split: got %+v, want %+v", det.Split.Configured, want)
	}
	if !strings.Contains(det.Split.Route, "vs-bill-service http[0] (bill-service-route)") {
		t.Errorf("configured route: got %q", det.Split.Route)
	}
	ms := det.Split.Measured
	if len(ms) != 2 || ms[0].Subset != "v1" || math.Abs(ms[0].Weight-88) > 1e-9 || ms[1].Subset != "v2" || math.Abs(ms[1].Weight-12) > 1e-9 {
		t.Errorf("measured split: got %+v, want v1 88%%, v2 12%%", ms)
	}
	if len(det.Proxies) != 1 || det.Proxies[0].Sync != Nacked || !strings.Contains(det.Proxies[0].Nack, "bad filter") {
		t.Errorf("proxies: got %+v, want bill-service-v1 NACKED with the message", det.Proxies)
	}
	if len(det.Errors) != 1 || det.Errors[0].Flags != "FI" || det.Errors[0].Reason != "fault injected (abort)" || det.Errors[0].Requests != 5 {
		t.Errorf("errors: got %+v, want 5 FI aborts", det.Errors)
	}
	found := false
	for _, f := range det.Findings {
		found = found || (f.Severity == "error" && strings.Contains(f.Message, "bad indentation"))
	}
	if !found {
		t.Errorf("findings: got %+v, want the rejected file", det.Findings)
	}
}

// TestGraphNodesWithoutTraffic: services from the registry, connected
// proxies' workloads (a router proxy is a gateway, with its sync state) and
// idle endpoint edges appear before any call.
func TestGraphNodesWithoutTraffic(t *testing.T) {
	host := "bill-service.istio-demo.svc.cluster.local"
	reg := &registry.Snapshot{
		Services:  []*registry.Service{{Hostname: host, Name: "bill-service", Namespace: "istio-demo"}},
		Endpoints: map[string][]*registry.Endpoint{host: {{Service: host, Address: "10.0.0.3", Workload: "bill-service-v1", Namespace: "istio-demo", Labels: map[string]string{"version": "v1"}}}},
	}
	proxies := []Proxy{{ID: "router~10.0.0.9~ingress.istio-system~istio-system.svc.cluster.local", Type: "router", Workload: "ingressgateway", Namespace: "istio-system",
		Status: server.ProxyStatus{Types: []server.TypeStatus{{Type: "LDS", SentNonce: "4", AckedNonce: "3"}}}}}
	g := BuildGraph(nil, proxies, reg)
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.ID] = n.Kind + " " + n.Sync
	}
	want := map[string]string{
		serviceID(host): "service ",
		workloadID("istio-demo", "bill-service-v1"):  "workload ",
		workloadID("istio-system", "ingressgateway"): "gateway STALE",
	}
	for id, k := range want {
		if kinds[id] != k {
			t.Errorf("node %s: got %q, want %q (all: %v)", id, kinds[id], k, kinds)
		}
	}
	e := edge(t, g, serviceID(host), workloadID("istio-demo", "bill-service-v1"))
	if e.Reporter != "" || e.RPS != 0 {
		t.Errorf("idle endpoint edge: got %+v, want no reporter and no traffic", e)
	}
}
