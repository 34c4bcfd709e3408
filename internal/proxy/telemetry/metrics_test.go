package telemetry

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func statsConfig(t testing.TB, metrics ...any) *Metrics {
	t.Helper()
	v, err := structpb.NewStruct(map[string]any{"metrics": metrics})
	if err != nil {
		t.Fatal(err)
	}
	m, err := CompileMetrics(v, "f.value")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// attrs are fixed request attributes.
type attrs struct {
	headers      map[string]string
	method, path string
}

func (a attrs) Header(n string) []byte { return []byte(a.headers[n]) }
func (a attrs) Method() []byte         { return []byte(a.method) }
func (a attrs) Path() []byte           { return []byte(a.path) }
func (a attrs) Host() []byte           { return []byte("reviews:9080") }
func (a attrs) Protocol() string       { return "HTTP/1.1" }

func TestMetricsOverrides(t *testing.T) {
	r := NewRecorder(nil)
	front := r.Interner.Peer(Peer{Workload: "frontend", Namespace: "default", App: "frontend"})
	bill := r.Interner.Peer(Peer{Workload: "bill-v2", Namespace: "default", App: "bill"})
	m := statsConfig(t,
		map[string]any{"name": "requests_total", "tags_to_remove": []any{"request_protocol"}, "dimensions": map[string]any{
			"user":        "request.headers['x-user'] | 'anonymous'",
			"url":         "request.url_path",
			"peer":        "upstream_peer.app",
			"source_app":  "'overridden'",
			"team":        "'books'",
			"downstream":  "downstream_peer.app | 'none'",
			"destination": "upstream_peer.workload",
		}},
		map[string]any{"name": "request_bytes", "drop": true},
		map[string]any{"name": "", "tags_to_remove": []any{"response_flags"}},
	)
	if !m.PerRequest() {
		t.Fatal("got PerRequest false, want true (header and url_path tags)")
	}
	k := Key{Reporter: Source, Source: front, Destination: bill, Protocol: "http", Security: "unknown", Metrics: m}
	for _, u := range []string{"ann", "bob", "ann", ""} {
		k := k
		m.Fill(&k, attrs{headers: map[string]string{"x-user": u}, method: "GET", path: "/a?q=1"})
		r.Request(&k, 200, -1, "-", 5, 10, 20)
	}
	fams := parse(t, r)
	if fams["istio_request_bytes"] != nil {
		t.Errorf("got istio_request_bytes, want it dropped")
	}
	rq := fams["istio_requests_total"]
	got := map[string]float64{}
	for _, s := range rq.GetMetric() {
		l := labelMap(s)
		for _, n := range []string{"request_protocol", "response_flags"} {
			if _, ok := l[n]; ok {
				t.Errorf("series %v has %s, want it removed", l, n)
			}
		}
		for n, want := range map[string]string{"url": "/a", "peer": "bill", "source_app": "overridden", "team": "books", "downstream": "none", "destination": "bill-v2", "reporter": "source"} {
			if l[n] != want {
				t.Errorf("got %s=%q, want %q", n, l[n], want)
			}
		}
		got[l["user"]] += s.GetCounter().GetValue()
	}
	if want := map[string]float64{"ann": 2, "bob": 1, "anonymous": 1}; len(got) != len(want) || got["ann"] != 2 || got["bob"] != 1 || got["anonymous"] != 1 {
		t.Errorf("got requests by user %v, want %v", got, want)
	}
	// Every other metric keeps the standard labels minus response_flags.
	d := fams["istio_request_duration_milliseconds"]
	if d == nil {
		t.Fatal("got no istio_request_duration_milliseconds")
	}
	// The user tag is only on requests_total, so the three user series
	// are one duration series.
	if n := len(d.GetMetric()); n != 1 {
		t.Fatalf("got %d duration series, want 1 (summed)", n)
	}
	l := labelMap(d.GetMetric()[0])
	if _, ok := l["response_flags"]; ok || l["request_protocol"] != "http" {
		t.Errorf("got duration labels %v, want request_protocol kept and response_flags removed", l)
	}
	if c := d.GetMetric()[0].GetHistogram().GetSampleCount(); c != 4 {
		t.Errorf("got %d duration samples, want 4", c)
	}
}

func TestMetricsInterned(t *testing.T) {
	a := statsConfig(t, map[string]any{"name": "requests_total", "drop": true})
	b := statsConfig(t, map[string]any{"name": "requests_total", "drop": true})
	c := statsConfig(t, map[string]any{"name": "requests_total", "drop": false})
	if a != b || a == c {
		t.Errorf("got a==b %v, a==c %v; want equal configs to share a pointer", a == b, a == c)
	}
}

func TestCompileMetricsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"unknown top field", map[string]any{"definitions": []any{}}, "f.value.definitions: not supported"},
		{"unknown entry field", map[string]any{"metrics": []any{map[string]any{"match": "x"}}}, "f.value.metrics[0].match: not supported"},
		{"unknown metric", map[string]any{"metrics": []any{map[string]any{"name": "my_metric"}}}, `f.value.metrics[0].name: "my_metric" is not a standard metric`},
		{"bad expression", map[string]any{"metrics": []any{map[string]any{"dimensions": map[string]any{"a": "xds.node"}}}}, "f.value.metrics[0].dimensions[a]: tag value"},
		{"bad tag name", map[string]any{"metrics": []any{map[string]any{"dimensions": map[string]any{"a-b": "'x'"}}}}, "f.value.metrics[0].dimensions[a-b]"},
		{"drop not bool", map[string]any{"metrics": []any{map[string]any{"drop": "yes"}}}, "f.value.metrics[0].drop: must be a bool"},
		{"remove not list", map[string]any{"metrics": []any{map[string]any{"tags_to_remove": "x"}}}, "f.value.metrics[0].tags_to_remove"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := structpb.NewStruct(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = CompileMetrics(v, "f.value")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkRequestHeaderTag measures a request whose series carries a
// tag from a request header (a value seen before), against the default.
func BenchmarkRequestHeaderTag(b *testing.B) {
	r := NewRecorder(nil)
	front := r.Interner.Peer(Peer{Workload: "frontend", Namespace: "default"})
	base := Key{Reporter: Source, Source: front, Protocol: "http", Security: "unknown"}
	a := benchAttrs{name: "x-user", value: []byte("ann")}
	b.Run("default", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			k := base
			r.Request(&k, 200, -1, "-", 5, 10, 20)
		}
	})
	m := statsConfig(b, map[string]any{"name": "requests_total", "dimensions": map[string]any{"user": "request.headers['x-user'] | 'anonymous'"}})
	b.Run("header-tag", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			k := base
			k.Metrics = m
			m.Fill(&k, a)
			r.Request(&k, 200, -1, "-", 5, 10, 20)
		}
	})
}

type benchAttrs struct {
	name  string
	value []byte
}

func (a benchAttrs) Header(n string) []byte {
	if n == a.name {
		return a.value
	}
	return nil
}
func (a benchAttrs) Method() []byte   { return nil }
func (a benchAttrs) Path() []byte     { return nil }
func (a benchAttrs) Host() []byte     { return nil }
func (a benchAttrs) Protocol() string { return "" }
