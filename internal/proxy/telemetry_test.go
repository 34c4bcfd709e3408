package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// scrape renders a proxy's /stats/prometheus body (Istio's standard
// metrics, then Envoy's stats) and parses it as Prometheus would.
func scrape(t *testing.T, r *running) map[string]*dto.MetricFamily {
	t.Helper()
	var b bytes.Buffer
	if err := r.p.Telemetry.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Stats.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&b)
	if err != nil {
		t.Fatalf("invalid exposition: %v\n%s", err, b.String())
	}
	return fams
}

// sample returns the value of the one series of name whose labels include
// want (counters and gauges), and whether there is exactly one.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var found []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		ok := true
		for _, l := range m.GetLabel() {
			if v, in := want[l.GetName()]; in && v != l.GetValue() {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return 0, false
	}
	if c := found[0].GetCounter(); c != nil {
		return c.GetValue(), true
	}
	return found[0].GetGauge().GetValue(), true
}

func labelsOf(fams map[string]*dto.MetricFamily, name string) []map[string]string {
	var out []map[string]string
	for _, m := range fams[name].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		out = append(out, l)
	}
	return out
}

// waitFor polls check until it returns nil or a generous bound passes.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = check(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

// wantCounters checks each name=value of want in one scrape.
func wantCounters(fams map[string]*dto.MetricFamily, labels map[string]string, want map[string]float64) error {
	var bad []string
	for name, w := range want {
		if got, ok := sample(fams, name, labels); !ok || got != w {
			bad = append(bad, fmt.Sprintf("%s: got %v (found %t), want %v", name, got, ok, w))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// echoServer copies every connection back to itself until EOF.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

const echoServiceMeta = `    metadata:
      filter_metadata:
        istio:
          services: [{host: echo.default.svc.cluster.local, name: echo, namespace: default}]
`

// TestTCPTelemetryTwoHops sends bytes through an outbound and an inbound
// TCP proxy to an echo server and reads both proxies' istio_tcp_* series:
// bytes show while the connection is open (periodic flush) and the totals
// at the close equal what was sent, with reporter, destination_service and
// Istio's labels for plaintext TCP on each side.
func TestTCPTelemetryTwoHops(t *testing.T) {
	echo := echoServer(t)
	fast := func(p *Proxy) { p.TCP.FlushInterval = 50 * time.Millisecond }
	in := startProxy(t, []testListener{{Name: "in", Direction: "INBOUND", TCP: `          stat_prefix: inbound|7000||
          cluster: inbound|7000||
`}}, []testCluster{{Name: "inbound|7000||", Addrs: []string{echo}, Extra: echoServiceMeta}}, fast)
	out := startProxy(t, []testListener{{Name: "out", TCP: `          stat_prefix: outbound|7000||echo.default.svc.cluster.local
          cluster: outbound|7000||echo.default.svc.cluster.local
`}}, []testCluster{{Name: "outbound|7000||echo.default.svc.cluster.local", Addrs: []string{in.addr(t, "in")}, Extra: echoServiceMeta}}, fast)

	c, err := net.Dial("tcp", out.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	roundTrip := func(n int) {
		t.Helper()
		msg := bytes.Repeat([]byte("r"), n)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(1000)

	src := map[string]string{"reporter": "source", "destination_service": "echo.default.svc.cluster.local", "request_protocol": "tcp",
		"source_workload": "test", "source_workload_namespace": "default", "source_app": "test", "connection_security_policy": "unknown", "response_flags": "-"}
	dst := map[string]string{"reporter": "destination", "destination_service": "echo.default.svc.cluster.local", "destination_service_name": "echo",
		"destination_service_namespace": "default", "request_protocol": "tcp", "destination_workload": "test", "destination_app": "test",
		"source_workload": "unknown", "connection_security_policy": "none", "response_flags": "-"}
	hops := []struct {
		name   string
		r      *running
		labels map[string]string
	}{{"outbound", out, src}, {"inbound", in, dst}}
	for _, h := range hops {
		waitFor(t, h.name+" proxy while open", func() error {
			return wantCounters(scrape(t, h.r), h.labels, map[string]float64{
				"istio_tcp_connections_opened_total": 1,
				"istio_tcp_received_bytes_total":     1000,
				"istio_tcp_sent_bytes_total":         1000,
			})
		})
		if n, ok := sample(scrape(t, h.r), "istio_tcp_connections_closed_total", h.labels); ok && n != 0 {
			t.Errorf("%s proxy: got %v connections closed while open, want 0", h.name, n)
		}
	}

	roundTrip(500)
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("got %q %v, want EOF after the half-close", rest, err)
	}
	c.Close()
	for _, h := range hops {
		waitFor(t, h.name+" proxy after close", func() error {
			fams := scrape(t, h.r)
			if err := wantCounters(fams, h.labels, map[string]float64{
				"istio_tcp_connections_opened_total": 1,
				"istio_tcp_connections_closed_total": 1,
				"istio_tcp_received_bytes_total":     1500,
				"istio_tcp_sent_bytes_total":         1500,
			}); err != nil {
				return err
			}
			l := labelsOf(fams, "istio_tcp_sent_bytes_total")
			if len(l) != 1 {
				return fmt.Errorf("got %d series, want 1: %v", len(l), l)
			}
			return wantCounters(fams, nil, map[string]float64{
				"envoy_tcp_downstream_cx_total":          1,
				"envoy_tcp_downstream_cx_rx_bytes_total": 1500,
				"envoy_tcp_downstream_cx_tx_bytes_total": 1500,
				"envoy_listener_downstream_cx_total":     1,
				"envoy_listener_downstream_cx_destroy":   1,
				"envoy_listener_downstream_cx_active":    0,
			})
		})
	}
}

// TestTCPTelemetryConnectFailure: a connection whose upstream refuses is
// opened and closed at once, flagged UF.
func TestTCPTelemetryConnectFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	r := startProxy(t, []testListener{{Name: "out", TCP: `          stat_prefix: dead
          cluster: dead
`}}, []testCluster{{Name: "dead", Addrs: []string{dead}, Extra: echoServiceMeta}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	c.Close()
	waitFor(t, "failed connection", func() error {
		return wantCounters(scrape(t, r), map[string]string{"reporter": "source", "response_flags": "UF"}, map[string]float64{
			"istio_tcp_connections_opened_total": 1,
			"istio_tcp_connections_closed_total": 1,
			"istio_tcp_sent_bytes_total":         0,
		})
	})
}

// TestHTTPConnectionManagerStats counts requests through a connection
// manager into Envoy's http.PREFIX.downstream_rq_* and listener.ADDR.*
// stats, in /stats and /stats/prometheus naming.
func TestHTTPConnectionManagerStats(t *testing.T) {
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &code)
		w.WriteHeader(code)
	}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /status/}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := client()
	codes := []int{200, 200, 201, 302, 404, 503, 503, 503}
	for _, code := range codes {
		resp, err := c.Get(fmt.Sprintf("http://%s/status/%d", r.addr(t, "out"), code))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := c.Get("http://" + r.addr(t, "out") + "/no-route")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("got %d, want 404 for a path without route", resp.StatusCode)
	}
	// One keep-alive connection carried all nine requests.
	want := map[string]uint64{
		"http.test.downstream_rq_total":            9,
		"http.test.downstream_rq_completed":        9,
		"http.test.downstream_rq_http1_total":      9,
		"http.test.downstream_rq_2xx":              3,
		"http.test.downstream_rq_3xx":              1,
		"http.test.downstream_rq_4xx":              2,
		"http.test.downstream_rq_5xx":              3,
		"http.test.no_route":                       1,
		"http.test.downstream_cx_total":            1,
		"http.test.downstream_cx_http1_total":      1,
		"listener.127.0.0.1_0.downstream_cx_total": 1,
	}
	waitFor(t, "http stats", func() error {
		for name, w := range want {
			if got := r.p.Stats.CounterValue(name); got != w {
				return fmt.Errorf("%s: got %d, want %d", name, got, w)
			}
		}
		if g := r.p.Stats.Get("http.test.downstream_rq_active"); g == nil || g.Gauge.Value() != 0 {
			return fmt.Errorf("http.test.downstream_rq_active: got %+v, want 0", g)
		}
		return nil
	})
	if g := r.p.Stats.Get("listener.127.0.0.1_0.downstream_cx_active"); g == nil || g.Gauge.Value() != 1 {
		t.Errorf("listener.127.0.0.1_0.downstream_cx_active: got %+v, want 1 open connection", g)
	}
	var text bytes.Buffer
	r.p.Stats.WriteText(&text, nil)
	for _, line := range []string{"http.test.downstream_rq_total: 9\n", "http.test.downstream_rq_5xx: 3\n", "listener.127.0.0.1_0.downstream_cx_total: 1\n"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("/stats lacks %q", line)
		}
	}
	fams := scrape(t, r)
	if err := wantCounters(fams, map[string]string{"http_conn_manager_prefix": "test"}, map[string]float64{
		"envoy_http_downstream_rq_total":     9,
		"envoy_http_downstream_rq_completed": 9,
	}); err != nil {
		t.Error(err)
	}
	if err := wantCounters(fams, map[string]string{"http_conn_manager_prefix": "test", "response_code_class": "5"}, map[string]float64{"envoy_http_downstream_rq_xx": 3}); err != nil {
		t.Error(err)
	}
	if err := wantCounters(fams, map[string]string{"listener_address": "127.0.0.1_0"}, map[string]float64{"envoy_listener_downstream_cx_total": 1}); err != nil {
		t.Error(err)
	}
	c.CloseIdleConnections()
	waitFor(t, "connection closed", func() error {
		if g := r.p.Stats.Get("listener.127.0.0.1_0.downstream_cx_active"); g.Gauge.Value() != 0 {
			return fmt.Errorf("listener downstream_cx_active: got %d, want 0", g.Gauge.Value())
		}
		if n := r.p.Stats.CounterValue("http.test.downstream_cx_destroy"); n != 1 {
			return fmt.Errorf("http.test.downstream_cx_destroy: got %d, want 1", n)
		}
		return nil
	})
}

// TestGRPCMessageCounts runs unary, client-, server- and bidirectional
// streaming calls through an outbound and an inbound proxy and wants
// istio_request_messages_total and istio_response_messages_total on both
// to count exactly the messages each way.
func TestGRPCMessageCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	route := vhost(`              - match: {prefix: /}
                route: {cluster: next, timeout: 0s}
`)
	hop2 := startProxy(t, []testListener{{Name: "in", Direction: "INBOUND", HCM: hcm(route, "")}}, []testCluster{{Name: "next", HTTP2: true, Addrs: []string{ln.Addr().String()}}}, nil)
	hop1 := startProxy(t, []testListener{{Name: "out", HCM: hcm(route, "")}}, []testCluster{{Name: "next", HTTP2: true, Addrs: []string{hop2.addr(t, "in")}}}, nil)
	cc, err := grpc.NewClient(hop1.addr(t, "out"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wantReq, wantResp float64
	check := func(what string) {
		t.Helper()
		for _, h := range []struct {
			r        *running
			reporter string
		}{{hop1, "source"}, {hop2, "destination"}} {
			waitFor(t, what+" at the "+h.reporter+" proxy", func() error {
				return wantCounters(scrape(t, h.r), map[string]string{"reporter": h.reporter, "request_protocol": "grpc", "grpc_response_status": "0"},
					map[string]float64{"istio_request_messages_total": wantReq, "istio_response_messages_total": wantResp})
			})
		}
	}

	for i := 0; i < 3; i++ {
		if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 50)}}); err != nil {
			t.Fatal(err)
		}
	}
	wantReq, wantResp = 3, 3
	check("3 unary calls")

	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		// Sizes cross the 16 KiB frame size, so prefixes split across reads.
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i * 5000)}},
			Payload: &testpb.Payload{Body: make([]byte, i*3000)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v at the end of the stream, want EOF", err)
	}
	wantReq, wantResp = wantReq+10, wantResp+10
	check("a stream of 10 requests and 10 responses")

	ss, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}, {Size: 0}, {Size: 70000}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ss.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	wantReq, wantResp = wantReq+1, wantResp+5
	check("a server stream of 5 responses")

	cs, err := tc.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := cs.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 10)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	wantReq, wantResp = wantReq+4, wantResp+1
	check("a client stream of 4 requests")

	if n := hop1.p.Stats.CounterValue("http.test.downstream_rq_http2_total"); n != 6 {
		t.Errorf("http.test.downstream_rq_http2_total: got %d, want 6 gRPC calls", n)
	}
}
