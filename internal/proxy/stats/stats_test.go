package stats

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestNamesAndText(t *testing.T) {
	s := NewStore()
	c := s.Scope("cluster", "outbound|80||web.default.svc.cluster.local")
	c.Counter("upstream_rq_total").Add(3)
	if c.Counter("upstream_rq_total") != c.Counter("upstream_rq_total") {
		t.Fatal("got two counters for one name, want the same")
	}
	c.Gauge("outlier_detection.ejections_active").Set(1)
	s.Scope("listener", "0.0.0.0_15001").Counter("downstream_cx_total").Inc()
	s.Scope("http", "inbound_0.0.0.0_80").Histogram("downstream_rq_time", nil).Observe(3)
	s.Scope("server", "").Gauge("live").Set(1)
	var b bytes.Buffer
	if err := s.WriteText(&b, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"cluster.outbound|80||web.default.svc.cluster.local.outlier_detection.ejections_active: 1",
		"cluster.outbound|80||web.default.svc.cluster.local.upstream_rq_total: 3",
		"http.inbound_0.0.0.0_80.downstream_rq_time: P0(nan,",
		"listener.0.0.0.0_15001.downstream_cx_total: 1",
		"server.live: 1",
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s\nwant %d", len(lines), b.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: got %q, want prefix %q", i, lines[i], w)
		}
	}
	b.Reset()
	s.WriteText(&b, func(n string) bool { return strings.HasPrefix(n, "server.") })
	if got := b.String(); got != "server.live: 1\n" {
		t.Errorf("filtered: got %q, want only server.live", got)
	}
}

func TestPrometheusParses(t *testing.T) {
	s := NewStore()
	for _, name := range []string{"outbound|80||a.default.svc.cluster.local", `weird"name\x`} {
		sc := s.Scope("cluster", name)
		sc.Counter("upstream_rq_total").Add(5)
		sc.Counter("upstream_rq_503").Inc()
		sc.Gauge("upstream_cx_active").Set(2)
	}
	s.Scope("http", "inbound_0.0.0.0_80").Histogram("downstream_rq_time", nil).Observe(12)
	s.Scope("server", "").Gauge("live").Set(1)
	var b bytes.Buffer
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("got invalid exposition: %v\n%s", err, b.String())
	}
	rq := fams["envoy_cluster_upstream_rq_total"]
	if rq == nil || len(rq.GetMetric()) != 2 {
		t.Fatalf("got %v, want envoy_cluster_upstream_rq_total with 2 series", rq)
	}
	got := map[string]float64{}
	for _, m := range rq.GetMetric() {
		got[m.GetLabel()[0].GetName()+"="+m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["cluster_name=outbound|80||a.default.svc.cluster.local"] != 5 || got[`cluster_name=weird"name\x`] != 5 {
		t.Errorf("got %v, want both clusters at 5 with escaped names intact", got)
	}
	codes := fams["envoy_cluster_upstream_rq"]
	if codes == nil || len(codes.GetMetric()) != 2 || codes.GetMetric()[0].GetLabel()[1].GetName() != "response_code" ||
		codes.GetMetric()[0].GetLabel()[1].GetValue() != "503" {
		t.Errorf("got %v, want envoy_cluster_upstream_rq{cluster_name,response_code=\"503\"} as Envoy's tag extraction gives", codes)
	}
	if h := fams["envoy_http_downstream_rq_time"]; h == nil || h.GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("got %v, want the histogram with one sample", h)
	}
	if g := fams["envoy_server_live"]; g == nil || g.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("got %v, want envoy_server_live 1", g)
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := NewHistogram([]float64{10, 20, 30})
	for i := 0; i < 10; i++ {
		h.Observe(5)
		h.Observe(15)
	}
	s := h.Snapshot()
	tests := []struct {
		q, want float64
	}{{0.25, 5}, {0.5, 10}, {0.75, 15}, {1, 20}}
	for _, tt := range tests {
		if got := s.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v): got %v, want %v", tt.q, got, tt.want)
		}
	}
	if s.Count != 20 || s.Sum != 200 {
		t.Errorf("got count %d sum %v, want 20 and 200", s.Count, s.Sum)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	s := NewStore()
	c := s.Scope("cluster", "x").Counter("upstream_rq_total")
	g := s.Scope("cluster", "x").Gauge("upstream_rq_active")
	h := s.Scope("cluster", "x").Histogram("upstream_rq_time", nil)
	if n := testing.AllocsPerRun(1000, func() { c.Inc(); g.Inc(); g.Dec(); h.Observe(7) }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func TestRemove(t *testing.T) {
	s := NewStore()
	s.Scope("cluster", "a").Counter("x").Inc()
	s.Scope("cluster", "ab").Counter("x").Inc()
	s.Remove("cluster", "a")
	if s.Get("cluster.a.x") != nil || s.Get("cluster.ab.x") == nil {
		t.Errorf("got wrong stats removed, want only cluster a's")
	}
}

func BenchmarkCounterParallel(b *testing.B) {
	c := NewStore().Scope("cluster", "x").Counter("upstream_rq_total")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func TestStatSets(t *testing.T) {
	s := NewStore()
	l := NewListenerStats(s, "0.0.0.0:15001")
	l.DownstreamCxTotal.Inc()
	h := NewHTTPStats(s, "outbound_0.0.0.0_80")
	h.DownstreamRqTotal.Inc()
	h.Response(503, 2)
	h.Response(200, 1)
	NewTCPStats(s, "redis").DownstreamCxRxBytesTotal.Add(10)
	want := map[string]uint64{
		"listener.0.0.0.0_15001.downstream_cx_total":   1,
		"http.outbound_0.0.0.0_80.downstream_rq_total": 1,
		"http.outbound_0.0.0.0_80.downstream_rq_5xx":   1,
		"http.outbound_0.0.0.0_80.downstream_rq_2xx":   1,
		"tcp.redis.downstream_cx_rx_bytes_total":       10,
	}
	for name, w := range want {
		if got := s.CounterValue(name); got != w {
			t.Errorf("%s: got %d, want %d", name, got, w)
		}
	}
	if got := ListenerStatName("[::]:80"); got != "[__]_80" {
		t.Errorf("got %q, want [__]_80", got)
	}
	if n := testing.AllocsPerRun(1000, func() { h.Response(200, 1) }); n != 0 {
		t.Errorf("got %v allocations per Response, want 0", n)
	}
	var b bytes.Buffer
	s.WritePrometheus(&b)
	if !strings.Contains(b.String(), `envoy_listener_downstream_cx_total{listener_address="0.0.0.0_15001"} 1`) ||
		!strings.Contains(b.String(), `envoy_http_downstream_rq_xx{http_conn_manager_prefix="outbound_0.0.0.0_80",response_code_class="5"} 1`) {
		t.Errorf("got exposition without Envoy's tag names:\n%s", b.String())
	}
}

// BenchmarkWritePrometheus renders a proxy with 500 clusters (about 20k
// stats): the bulk read the dashboard and Prometheus do.
func BenchmarkWritePrometheus(b *testing.B) {
	s := NewStore()
	for i := 0; i < 500; i++ {
		sc := s.Scope("cluster", "outbound|80||svc"+strconv.Itoa(i)+".default.svc.cluster.local")
		for j := 0; j < 40; j++ {
			sc.Counter("stat_" + strconv.Itoa(j)).Add(uint64(j))
		}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.WritePrometheus(io.Discard)
	}
}

func TestScopeWithoutKind(t *testing.T) {
	s := NewStore()
	s.Scope("", "x").Counter("y").Inc()
	if st := s.Get("x.y"); st == nil || st.TagValue != "x" {
		t.Errorf("got %+v, want stat x.y tagged x", st)
	}
}

// TestHistogramBucketBoundsAsEnvoyWrites: le labels are plain decimals, as
// Envoy's /stats/prometheus writes them (le="1800000", not "1.8e+06"):
// Prometheus 2 compares le as a string, so a query or recording rule
// naming Envoy's bound must match the proxy's series.
func TestHistogramBucketBoundsAsEnvoyWrites(t *testing.T) {
	h := NewHistogram(DefaultBuckets)
	h.Observe(3_000_000)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	WriteHistogram(bw, "istio_request_duration_milliseconds", `reporter="destination"`, h.Snapshot())
	bw.Flush()
	var les []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if i := strings.Index(line, `le="`); i >= 0 {
			rest := line[i+4:]
			les = append(les, rest[:strings.IndexByte(rest, '"')])
		}
	}
	want := "0.5,1,5,10,25,50,100,250,500,1000,2500,5000,10000,30000,60000,300000,600000,1800000,3600000,+Inf"
	if got := strings.Join(les, ","); got != want {
		t.Errorf("le bounds:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(buf.String(), `istio_request_duration_milliseconds_bucket{reporter="destination",le="3600000"} 1`) {
		t.Errorf("3 000 000 ms not counted in le=\"3600000\":\n%s", buf.String())
	}
}
