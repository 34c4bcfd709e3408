package trace

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

type protoreflectMessage = protoreflect.Message

func hdrs(kv ...string) http1.Headers {
	var h http1.Headers
	for i := 0; i < len(kv); i += 2 {
		h = append(h, http1.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

func get(h http1.Headers, k string) string {
	v, ok := h.Get(k)
	if !ok {
		return "<none>"
	}
	return string(v)
}

const (
	tid  = "4bf92f3577b34da6a3ce929d0e0e4736"
	psid = "00f067aa0ba902b7"
)

func TestExtract(t *testing.T) {
	for _, c := range []struct {
		name            string
		h               http1.Headers
		valid, decided  bool
		sampled         bool
		traceID, spanID string
	}{
		{"traceparent sampled", hdrs("traceparent", "00-"+tid+"-"+psid+"-01"), true, true, true, tid, psid},
		{"traceparent not sampled", hdrs("traceparent", "00-"+tid+"-"+psid+"-00"), true, true, false, tid, psid},
		{"traceparent zero trace id", hdrs("traceparent", "00-00000000000000000000000000000000-"+psid+"-01"), false, false, false, "", ""},
		{"traceparent wins over b3", hdrs("x-b3-traceid", "1111111111111111", "x-b3-spanid", "2222222222222222", "traceparent", "00-"+tid+"-"+psid+"-01"), true, true, true, tid, psid},
		{"b3 multi", hdrs("x-b3-traceid", tid, "x-b3-spanid", psid, "x-b3-sampled", "1"), true, true, true, tid, psid},
		{"b3 multi 64-bit", hdrs("x-b3-traceid", "a3ce929d0e0e4736", "x-b3-spanid", psid), true, false, false, "0000000000000000a3ce929d0e0e4736", psid},
		{"b3 sampled only", hdrs("x-b3-sampled", "0"), false, true, false, "", ""},
		{"b3 debug flag", hdrs("x-b3-flags", "1"), false, true, true, "", ""},
		{"b3 single", hdrs("b3", tid+"-"+psid+"-1-0000000000000001"), true, true, true, tid, psid},
		{"b3 single deny", hdrs("b3", "0"), false, true, false, "", ""},
		{"garbage", hdrs("traceparent", "zz", "b3", "nope"), false, false, false, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Extract(c.h)
			if p.Valid != c.valid || p.Decided != c.decided || p.Sampled != c.sampled {
				t.Fatalf("got valid %v decided %v sampled %v, want %v %v %v", p.Valid, p.Decided, p.Sampled, c.valid, c.decided, c.sampled)
			}
			if c.valid {
				if got := string(appendHex(nil, p.TraceID[:])); got != c.traceID {
					t.Errorf("got trace id %s, want %s", got, c.traceID)
				}
				if got := string(appendHex(nil, p.SpanID[:])); got != c.spanID {
					t.Errorf("got span id %s, want %s", got, c.spanID)
				}
			}
		})
	}
}

func seq() func() uint64 {
	var n uint64
	return func() uint64 { n++; return n * 0x9e3779b97f4a7c15 }
}

func TestStartPropagates(t *testing.T) {
	c := &Config{threshold: 0}
	h := hdrs("traceparent", "00-"+tid+"-"+psid+"-01", "tracestate", "vendor=x", "b3", "whatever")
	var s State
	c.Start(&s, &h, seq())
	if !s.Sampled || !s.HasParent {
		t.Fatalf("got sampled %v parent %v, want the caller's decision (sampled) at 0%%", s.Sampled, s.HasParent)
	}
	sid := string(appendHex(nil, s.SpanID[:]))
	if got, want := get(h, "traceparent"), "00-"+tid+"-"+sid+"-01"; got != want {
		t.Errorf("got traceparent %s, want %s", got, want)
	}
	if got := get(h, "tracestate"); got != "vendor=x" {
		t.Errorf("got tracestate %s, want it passed on", got)
	}
	for k, want := range map[string]string{"x-b3-traceid": tid, "x-b3-spanid": sid, "x-b3-parentspanid": psid, "x-b3-sampled": "1",
		"b3": tid + "-" + sid + "-1-" + psid} {
		if got := get(h, k); got != want {
			t.Errorf("got %s %s, want %s", k, got, want)
		}
	}
	// A caller that said "not sampled" is honoured at 100%.
	c = &Config{threshold: sampleScale}
	h = hdrs("x-b3-traceid", tid, "x-b3-spanid", psid, "x-b3-sampled", "0")
	c.Start(&s, &h, seq())
	if s.Sampled || get(h, "x-b3-sampled") != "0" || !strings.HasSuffix(get(h, "traceparent"), "-00") {
		t.Errorf("got sampled %v, x-b3-sampled %s, traceparent %s; want the caller's no", s.Sampled, get(h, "x-b3-sampled"), get(h, "traceparent"))
	}
	// No context: a new trace, no parent header.
	h = hdrs("x-b3-parentspanid", psid)
	c.Start(&s, &h, seq())
	if s.HasParent || !s.Sampled || get(h, "x-b3-parentspanid") != "<none>" || get(h, "b3") != "<none>" {
		t.Errorf("got parent %v sampled %v parentspanid %s b3 %s, want a sampled root", s.HasParent, s.Sampled, get(h, "x-b3-parentspanid"), get(h, "b3"))
	}
}

func TestSamplingPercentage(t *testing.T) {
	for _, pct := range []float64{0, 1, 25, 100} {
		tr := &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: pct}, Provider: zipkinProvider(t, "zipkin")}
		c, err := Compile(tr, true, Node{ID: "n"}, nil, "tracing")
		if err != nil {
			t.Fatal(err)
		}
		n, total := 0, 20000
		rnd := seq()
		var s State
		for i := 0; i < total; i++ {
			h := http1.Headers{}
			c.Start(&s, &h, rnd)
			if s.Sampled {
				n++
			}
		}
		got := float64(n) * 100 / float64(total)
		if got < pct*0.8-0.2 || got > pct*1.2+0.2 {
			t.Errorf("at %v%%: sampled %.2f%%", pct, got)
		}
		if (pct == 0 && n != 0) || (pct == 100 && n != total) {
			t.Errorf("at %v%%: sampled %d of %d", pct, n, total)
		}
	}
}

func zipkinProvider(t *testing.T, cluster string) *tracev3.Tracing_Http {
	t.Helper()
	return provider(t, "envoy.tracers.zipkin", &tracev3.ZipkinConfig{CollectorCluster: cluster, CollectorEndpoint: "/api/v2/spans",
		CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON, TraceId_128Bit: true, SharedSpanContext: wrapperspb.Bool(false)})
}

func provider(t *testing.T, name string, m interface {
	ProtoReflect() protoreflectMessage
}) *tracev3.Tracing_Http {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &tracev3.Tracing_Http{Name: name, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
}

func TestCompileRejects(t *testing.T) {
	zk := func(f func(*tracev3.ZipkinConfig)) *tracev3.Tracing_Http {
		m := &tracev3.ZipkinConfig{CollectorCluster: "c", CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			TraceId_128Bit: true, SharedSpanContext: wrapperspb.Bool(false)}
		f(m)
		return provider(t, "z", m)
	}
	ok := zk(func(*tracev3.ZipkinConfig) {})
	for _, c := range []struct {
		name string
		tr   *hcmv3.HttpConnectionManager_Tracing
		want string
	}{
		{"no provider", &hcmv3.HttpConnectionManager_Tracing{}, "tracing.provider: missing"},
		{"sampling over 100", &hcmv3.HttpConnectionManager_Tracing{Provider: ok, RandomSampling: &typev3.Percent{Value: 101}}, "tracing.random_sampling.value"},
		{"client sampling", &hcmv3.HttpConnectionManager_Tracing{Provider: ok, ClientSampling: &typev3.Percent{Value: 5}}, "tracing.client_sampling"},
		{"verbose", &hcmv3.HttpConnectionManager_Tracing{Provider: ok, Verbose: true}, "tracing.verbose"},
		{"metadata tag", &hcmv3.HttpConnectionManager_Tracing{Provider: ok, CustomTags: []*tracingtypev3.CustomTag{{Tag: "m", Type: &tracingtypev3.CustomTag_Metadata_{Metadata: &tracingtypev3.CustomTag_Metadata{}}}}}, "tracing.custom_tags[0]"},
		{"zipkin proto", &hcmv3.HttpConnectionManager_Tracing{Provider: zk(func(m *tracev3.ZipkinConfig) { m.CollectorEndpointVersion = tracev3.ZipkinConfig_HTTP_PROTO })}, "collector_endpoint_version"},
		{"zipkin shared span context", &hcmv3.HttpConnectionManager_Tracing{Provider: zk(func(m *tracev3.ZipkinConfig) { m.SharedSpanContext = nil })}, "shared_span_context"},
		{"otel google grpc", &hcmv3.HttpConnectionManager_Tracing{Provider: provider(t, "o", &tracev3.OpenTelemetryConfig{GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{}}}})}, "grpc_service: only envoy_grpc"},
		{"otel sampler", &hcmv3.HttpConnectionManager_Tracing{Provider: provider(t, "o", &tracev3.OpenTelemetryConfig{Sampler: &corev3.TypedExtensionConfig{Name: "s"}})}, "typed_config.sampler"},
		{"otel no service", &hcmv3.HttpConnectionManager_Tracing{Provider: provider(t, "o", &tracev3.OpenTelemetryConfig{})}, "set grpc_service or http_service"},
		{"datadog", &hcmv3.HttpConnectionManager_Tracing{Provider: provider(t, "d", &tracev3.DatadogConfig{})}, "DatadogConfig is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.tr, false, Node{}, nil, "tracing")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// zipkinCollector decodes Zipkin v2 JSON posts.
func zipkinCollector(t *testing.T) (addr string, spans <-chan zipkinSpan) {
	ch := make(chan zipkinSpan, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/spans" || r.Header.Get("content-type") != "application/json" {
			t.Errorf("got %s %s, want a JSON post to /api/v2/spans", r.Method, r.URL.Path)
		}
		var batch []zipkinSpan
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &batch); err != nil {
			t.Errorf("decoding %s: %v", b, err)
		}
		for _, s := range batch {
			ch <- s
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), ch
}

func dialTo(addr string) Dialer {
	return func(ctx context.Context, cluster string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func TestZipkinExport(t *testing.T) {
	addr, got := zipkinCollector(t)
	reg := &Registry{Dial: dialTo(addr), FlushInterval: 10 * time.Millisecond}
	defer reg.Close()
	tr := &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(t, "outbound|9411||zipkin.istio-system.svc.cluster.local"),
		CustomTags: []*tracingtypev3.CustomTag{
			{Tag: "istio.mesh_id", Type: &tracingtypev3.CustomTag_Literal_{Literal: &tracingtypev3.CustomTag_Literal{Value: "cluster.local"}}},
			{Tag: "user", Type: &tracingtypev3.CustomTag_RequestHeader{RequestHeader: &tracingtypev3.CustomTag_Header{Name: "x-user", DefaultValue: "anon"}}},
		}}
	c, err := Compile(tr, true, Node{ID: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", Cluster: "a.ns"}, reg, "tracing")
	if err != nil {
		t.Fatal(err)
	}
	h := hdrs("x-b3-traceid", tid, "x-b3-spanid", psid, "x-b3-sampled", "1", "x-user", "jesse")
	var s State
	c.Start(&s, &h, seq())
	start := time.Unix(1700000000, 0)
	sp := &Span{Name: "reviews.ns.svc.cluster.local:9080/*", Start: start, End: start.Add(1500 * time.Microsecond)}
	sp.Tag("http.status_code", "200")
	if !c.Reports(&s) {
		t.Fatal("a sampled request does not report")
	}
	c.Finish(&s, sp, h)
	select {
	case z := <-got:
		if z.TraceID != tid || z.ParentID != psid || z.ID != string(appendHex(nil, s.SpanID[:])) || z.Kind != "CLIENT" || z.Name != sp.Name ||
			z.Timestamp != start.UnixMicro() || z.Duration != 1500 || z.LocalEndpoint.ServiceName != "a.ns" {
			t.Errorf("got %+v", z)
		}
		for k, want := range map[string]string{"http.status_code": "200", "node_id": "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "istio.mesh_id": "cluster.local", "user": "jesse"} {
			if z.Tags[k] != want {
				t.Errorf("got tag %s=%q, want %q", k, z.Tags[k], want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no span reached the Zipkin collector")
	}
	r := reg.Reporter(c.Reporter.target())
	for deadline := time.Now().Add(10 * time.Second); r.Sent() != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := r.Sent(); n != 1 {
		t.Errorf("got %d spans sent, want 1", n)
	}
}

// blockedExporter never returns until released: a dead collector.
type blockedExporter struct{ release chan struct{} }

func (b *blockedExporter) Export(ctx context.Context, _ []*Span) error {
	<-b.release
	return errors.New("collector gone")
}
func (b *blockedExporter) Close() {}

// TestReporterNeverBlocks fills the queue behind a stuck exporter: Report
// returns at once and counts what it drops.
func TestReporterNeverBlocks(t *testing.T) {
	exp := &blockedExporter{release: make(chan struct{})}
	r := NewReporter(exp, 8, 1, time.Millisecond)
	for i := 0; i < 100; i++ {
		r.Report(&Span{})
	}
	// One span is in the stuck export, 8 queued, the rest dropped.
	if d := r.Dropped(); d < 100-8-1 {
		t.Errorf("got %d dropped, want at least %d", d, 100-8-1)
	}
	close(exp.release)
	r.Close()
	if d := r.Dropped(); d != 100 {
		t.Errorf("got %d dropped after the failed exports, want 100", d)
	}
}

// FuzzExtract feeds arbitrary trace headers (untrusted input from any
// caller) through Extract and Start: no panic, and what Start writes
// upstream parses back to the proxy's own span.
func FuzzExtract(f *testing.F) {
	f.Add("00-"+tid+"-"+psid+"-01", "", tid, psid, "1")
	f.Add("", tid+"-"+psid+"-1-"+psid, "", "", "")
	f.Add("ff-zz", "0", "a3ce929d0e0e4736", "00", "true")
	f.Fuzz(func(t *testing.T, tp, b3, traceID, spanID, sampled string) {
		h := hdrs("traceparent", tp, "b3", b3, "x-b3-traceid", traceID, "x-b3-spanid", spanID, "x-b3-sampled", sampled)
		Extract(h)
		c := &Config{threshold: sampleScale / 2}
		var s State
		c.Start(&s, &h, seq())
		p := Extract(h)
		if !p.Valid || p.TraceID != s.TraceID || p.SpanID != s.SpanID || p.Sampled != s.Sampled {
			t.Fatalf("propagated %+v, want the proxy's span %+v", p, s)
		}
	})
}
