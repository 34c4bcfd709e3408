package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// zipkinSink is a Zipkin v2 JSON collector counting the spans it decodes.
type zipkinSink struct {
	mu    sync.Mutex
	spans []map[string]any
	addr  string
}

func newZipkinSink(t testing.TB) *zipkinSink {
	z := &zipkinSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &batch); err != nil {
			t.Errorf("zipkin: %v", err)
		}
		z.mu.Lock()
		z.spans = append(z.spans, batch...)
		z.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	z.addr = srv.Listener.Addr().String()
	return z
}

func (z *zipkinSink) count() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.spans)
}

// tracingHCM is the HCM tracing field as trellisd emits it for a Zipkin
// provider, at pct percent.
func tracingHCM(pct float64) string {
	return fmt.Sprintf(`          tracing:
            random_sampling: {value: %v}
            custom_tags:
            - {tag: istio.mesh_id, literal: {value: cluster.local}}
            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: zipkin
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
                trace_id_128bit: true
                shared_span_context: false
`, pct)
}

func tracedProxy(t testing.TB, pct float64) (addr string, z *zipkinSink) {
	be := rawBackend(t, string(bytes.Repeat([]byte("y"), 1024)))
	z = newZipkinSink(t)
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
                decorator: {operation: "be.default.svc.cluster.local:80/*"}
`), tracingHCM(pct))}}, []testCluster{{Name: "be", Addrs: []string{be}}, {Name: "zipkin", Addrs: []string{z.addr}}}, nil)
	return r.addr(t, "out"), z
}

// TestTracingSampling drives the proxy's Zipkin tracing: at 0% only the
// requests whose caller sampled them are reported, at 100% all but the
// ones whose caller said no.
func TestTracingSampling(t *testing.T) {
	for _, c := range []struct {
		pct       float64
		hdr       string
		n, report int
	}{
		{0, "", 20, 0},
		{0, "x-b3-sampled: 1\r\n", 20, 20},
		{0, "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n", 20, 20},
		{100, "", 20, 20},
		{100, "x-b3-traceid: 0af7651916cd43dd8448eb211c80319c\r\nx-b3-spanid: b7ad6b7169203331\r\nx-b3-sampled: 0\r\n", 20, 0},
		{100, "b3: 0\r\n", 20, 0},
	} {
		t.Run(fmt.Sprintf("%v%% %q", c.pct, strings.TrimSpace(c.hdr)), func(t *testing.T) {
			addr, z := tracedProxy(t, c.pct)
			req := "GET /x HTTP/1.1\r\nHost: be\r\n" + c.hdr + "\r\n"
			cl := newRawClient(t, addr, req)
			for i := 0; i < c.n; i++ {
				cl.do(t)
			}
			// A sentinel sampled by its caller flushes behind the others.
			cl.req = []byte("GET /x HTTP/1.1\r\nHost: be\r\nx-b3-sampled: 1\r\n\r\n")
			cl.do(t)
			deadline := time.Now().Add(10 * time.Second)
			for z.count() < c.report+1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := z.count(); got != c.report+1 {
				t.Errorf("got %d spans, want %d and the sentinel", got, c.report)
			}
		})
	}
}

// BenchmarkRequestPathTracing is BenchmarkRequestPath with Zipkin tracing
// at 1% and 100% sampling (spans batched to a local collector).
func BenchmarkRequestPathTracing(b *testing.B) {
	for _, pct := range []float64{1, 100} {
		b.Run(fmt.Sprintf("%v%%", pct), func(b *testing.B) {
			addr, _ := tracedProxy(b, pct)
			c := newRawClient(b, addr, onePOST(1024))
			c.do(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.do(b)
			}
		})
	}
}

// TestTracingDeadCollector: with the collector's only endpoint refusing
// connections, traced requests are served as usual and the lost spans are
// counted in tracing.zipkin.spans_dropped.
func TestTracingDeadCollector(t *testing.T) {
	be := rawBackend(t, "ok")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there any more
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), tracingHCM(100))}}, []testCluster{{Name: "be", Addrs: []string{be}}, {Name: "zipkin", Addrs: []string{dead}}}, nil)
	c := newRawClient(t, r.addr(t, "out"), "GET /x HTTP/1.1\r\nHost: be\r\n\r\n")
	const n = 50
	for i := 0; i < n; i++ {
		c.do(t)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.p.Stats.CounterValue("tracing.zipkin.spans_dropped") < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := r.p.Stats.CounterValue("tracing.zipkin.spans_dropped"); got != n {
		t.Errorf("got %d spans dropped, want %d", got, n)
	}
	if got := r.p.Stats.CounterValue("tracing.zipkin.reports_failed"); got == 0 {
		t.Errorf("got no failed reports")
	}
	if got := r.p.Stats.CounterValue("tracing.zipkin.spans_sent"); got != 0 {
		t.Errorf("got %d spans sent to a dead collector", got)
	}
}
