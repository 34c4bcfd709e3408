package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// hangBound is how long a response may take before the test calls it a
// hang. Latencies are logged, not asserted: the bound only detects a
// request that is never answered.
const hangBound = 2 * time.Second

const localReplyBootstrap = `node: {id: router~127.0.0.1~gw.default~default.svc.cluster.local, cluster: gw}
static_resources:
  listeners:
  - name: gw
    address:
      socket_address: {address: 127.0.0.1, port_value: {{PORT}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          codec_type: AUTO
          http_filters:
          - name: envoy.filters.http.fault
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: gw
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /direct}
                direct_response: {status: 200, body: {inline_string: "ok"}}
              - match: {prefix: /redirect}
                redirect: {path_redirect: /elsewhere}
              - match: {prefix: /abort}
                route: {cluster: up}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 503, percentage: {numerator: 100}}
              - match: {prefix: /grpcabort}
                route: {cluster: up}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {grpc_status: 7, percentage: {numerator: 100}}
              - match: {prefix: /uh}
                route: {cluster: empty}
              - match: {prefix: /uo}
                route: {cluster: held, timeout: 0s}
              - match: {prefix: /ut}
                route: {cluster: slow, timeout: 0.3s}
              - match: {prefix: /early}
                route: {cluster: early}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{UP}}}}}}]}]
  - name: empty
    type: STATIC
    connect_timeout: 1s
    load_assignment: {cluster_name: empty, endpoints: []}
  - name: held
    type: STATIC
    connect_timeout: 1s
    circuit_breakers:
      thresholds: [{max_requests: 1}]
    load_assignment:
      cluster_name: held
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{HELD}}}}}}]}]
  - name: slow
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: slow
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{SLOW}}}}}}]}]
  - name: early
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: early
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{EARLY}}}}}}]}]
`

// replyKind is one response the proxy makes itself (or, for "early", an
// upstream answer that does not wait for the request body).
type replyKind struct {
	name string
	// path prefix for HTTP requests ("" when only gRPC applies).
	path   string
	status int
	// body is a substring of the HTTP response body.
	body string
	// forwards is set when the router reads the request body before the
	// answer (the 100 Continue goes out).
	forwards bool
	// grpc is the gRPC service routed to the kind ("" when it does not
	// apply) and code the status a call gets.
	grpc string
	code codes.Code
	// wait is how long the answer waits by design (the route timeout).
	wait time.Duration
}

var replyKinds = []replyKind{
	{name: "direct response", path: "/direct", status: 200, body: "ok"},
	{name: "redirect", path: "/redirect", status: 301},
	{name: "fault abort http", path: "/abort", status: 503, body: "fault filter abort", grpc: "abort.Svc", code: codes.Unavailable},
	{name: "fault abort grpc", grpc: "grpcabort.Svc", code: codes.PermissionDenied},
	{name: "404 NR", path: "/nr", status: 404, grpc: "nr.Svc", code: codes.Unimplemented},
	{name: "503 UH", path: "/uh", status: 503, body: "no healthy upstream", grpc: "uh.Svc", code: codes.Unavailable},
	{name: "503 UO", path: "/uo", status: 503, body: "overflow", grpc: "uo.Svc", code: codes.Unavailable},
	{name: "504 UT", path: "/ut", status: 504, body: "upstream request timeout", forwards: true, grpc: "ut.Svc", code: codes.Unavailable, wait: 300 * time.Millisecond},
}

// latencies collects how long each answer took beyond its designed wait.
type latencies struct {
	mu  sync.Mutex
	max time.Duration
	at  string
}

func (l *latencies) add(t *testing.T, k replyKind, d time.Duration) {
	t.Logf("answered in %v (%v beyond the designed wait)", d, d-k.wait)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d-k.wait > l.max {
		l.max, l.at = d-k.wait, t.Name()
	}
}

// TestLocalRepliesWithRequestBodies sends every shape of request to every
// response the proxy makes itself, through the trellis-proxy binary: each
// gets its answer at once, and the connection then serves the next
// request or closes cleanly.
func TestLocalRepliesWithRequestBodies(t *testing.T) {
	up := versionServer(t, "up")
	release := make(chan struct{})
	holding := make(chan struct{}, 1)
	held := backendServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/uo/hold" {
			holding <- struct{}{}
			<-release
		}
	}))
	slow := backendServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	early := backendServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too large")
	}))
	addr := freePort(t)
	dir := t.TempDir()
	writeConfig(t, dir, "bootstrap.yaml", localReplyBootstrap, map[string]string{
		"PORT": port(addr), "UP": port(up), "HELD": port(held), "SLOW": port(slow), "EARLY": port(early),
	})
	startProxy(t, "-c", filepath.Join(dir, "bootstrap.yaml"))
	waitHTTPPath(t, addr, "/direct/ready")

	// Hold the only request slot of cluster "held": "503 UO" overflows.
	holdDone := make(chan struct{})
	go func() {
		defer close(holdDone)
		c := &http.Client{Timeout: 30 * time.Second}
		if resp, err := c.Get("http://" + addr + "/uo/hold"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the hold request did not reach its upstream")
	}
	t.Cleanup(func() {
		close(release)
		<-holdDone
	})

	var lat latencies
	for _, k := range replyKinds {
		t.Run(k.name, func(t *testing.T) {
			if k.path != "" {
				for _, s := range h1Shapes {
					t.Run(s.name, func(t *testing.T) { h1Case(t, addr, k, s, &lat) })
				}
				for _, size := range []int{1 << 10, 1 << 20} {
					t.Run(fmt.Sprintf("HTTP/2 POST %d bytes", size), func(t *testing.T) { h2Case(t, addr, k, size, &lat) })
				}
			}
			if k.grpc != "" {
				t.Run("gRPC call", func(t *testing.T) { grpcCase(t, addr, k, &lat) })
			}
		})
	}
	// An upstream that answers without reading the body gets its answer
	// forwarded, also when it stops reading a body too large to buffer
	// (net/http closes such a connection 500 ms after its answer).
	var earlyLat latencies
	t.Run("upstream answers before the body", func(t *testing.T) {
		k := replyKind{path: "/early", status: 413, body: "too large", forwards: true}
		shapes := append(h1Shapes[:len(h1Shapes):len(h1Shapes)], h1Shape{name: "POST 32 MiB", head: "Content-Length: 33554432\r\n", stream: 32 << 20})
		for _, s := range shapes {
			t.Run(s.name, func(t *testing.T) { h1Case(t, addr, k, s, &earlyLat) })
		}
	})
	t.Logf("slowest answer beyond its designed wait: %v (%s)", lat.max, lat.at)
	t.Logf("slowest upstream answer before the body: %v (%s)", earlyLat.max, earlyLat.at)
}

// backendServer starts an HTTP/1.1 server on 127.0.0.1:0.
func backendServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// waitHTTPPath polls until GET path through addr answers 200.
func waitHTTPPath(t *testing.T, addr, path string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + addr + path); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no 200 for %s through %s", path, addr)
}

// h1Shape is one way of sending an HTTP/1.1 request.
type h1Shape struct {
	name string
	// head holds the request's framing fields.
	head string
	// body is sent with the head; stream is sent by a goroutine after it,
	// chunked when the head says so.
	body   string
	stream int
	// expect: the body (1 KiB) is sent only after 100 Continue.
	expect bool
	// keepAlive: the connection must serve the next request.
	keepAlive bool
}

var h1Shapes = []h1Shape{
	{name: "GET", keepAlive: true},
	{name: "POST content-length", head: "Content-Length: 5\r\n", body: "hello", keepAlive: true},
	{name: "POST chunked", head: "Transfer-Encoding: chunked\r\n", body: "5\r\nhello\r\n0\r\n\r\n", keepAlive: true},
	{name: "POST expect 100-continue", head: "Content-Length: 1024\r\nExpect: 100-continue\r\n", expect: true},
	{name: "POST 1 MiB", head: "Content-Length: 1048576\r\n", stream: 1 << 20},
	{name: "POST 1 MiB chunked", head: "Transfer-Encoding: chunked\r\n", stream: 1 << 20},
}

// h1Case sends one request shape on a fresh connection, then checks that
// the connection serves another request or is closed cleanly.
func h1Case(t *testing.T, addr string, k replyKind, s h1Shape, lat *latencies) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * hangBound))
	br := bufio.NewReader(c)
	method := "POST"
	if s.head == "" {
		method = "GET"
	}
	head := method + " " + k.path + "/x HTTP/1.1\r\nHost: gw.example\r\n" + s.head + "\r\n"
	start := time.Now()
	if _, err := io.WriteString(c, head+s.body); err != nil {
		t.Fatal(err)
	}
	// The streaming client stops sending once it has the answer, as curl
	// does.
	stop := make(chan struct{})
	streamed := make(chan struct{})
	var stopOnce sync.Once
	stopStream := func() {
		stopOnce.Do(func() { close(stop) })
		<-streamed
	}
	if s.stream > 0 {
		go func() {
			defer close(streamed)
			streamBody(c, s.stream, strings.Contains(s.head, "chunked"), stop)
		}()
	} else {
		close(streamed)
	}
	defer stopStream()

	c.SetReadDeadline(start.Add(hangBound))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", hangBound, err)
	}
	if resp.StatusCode == 100 {
		if !s.expect || !k.forwards {
			t.Fatalf("got 100 Continue, want %d at once", k.status)
		}
		if _, err := c.Write(bytes.Repeat([]byte("b"), 1024)); err != nil {
			t.Fatal(err)
		}
		if resp, err = http.ReadResponse(br, nil); err != nil {
			t.Fatalf("no answer within %v: %v", hangBound, err)
		}
	} else if s.expect && k.forwards {
		t.Errorf("got %d without 100 Continue first, want 100 Continue", resp.StatusCode)
	}
	lat.add(t, k, time.Since(start))
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	if resp.StatusCode != k.status || !strings.Contains(string(body), k.body) {
		t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, body, k.status, k.body)
	}
	if s.expect && !k.forwards && !resp.Close {
		t.Errorf("answer without 100 Continue lacks connection: close (the client may still send the body)")
	}
	if s.keepAlive && resp.Close {
		t.Errorf("got connection: close, want the connection kept alive")
	}
	stopStream()

	c.SetDeadline(time.Now().Add(3 * hangBound))
	if resp.Close {
		// Closed cleanly: a FIN after the response, no reset.
		var b [1]byte
		n, err := br.Read(b[:])
		if n != 0 || err != io.EOF {
			t.Errorf("after connection: close got %d bytes, %v; want EOF", n, err)
		}
		return
	}
	if _, err := io.WriteString(c, "GET /direct/next HTTP/1.1\r\nHost: gw.example\r\n\r\n"); err != nil {
		t.Fatalf("next request: %v", err)
	}
	next, err := http.ReadResponse(br, nil)
	if err != nil {
		if (err == io.EOF || err == io.ErrUnexpectedEOF) && !s.keepAlive && strings.Contains(s.head, "chunked") {
			// A chunked body longer than the drain bound cannot be
			// announced in the response head: the connection closes
			// after it.
			return
		}
		t.Fatalf("next request on the connection: %v", err)
	}
	b, _ := io.ReadAll(next.Body)
	if next.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("next request: got %d %q, want 200 ok", next.StatusCode, b)
	}
}

// streamBody writes a body of n bytes in pieces until it is done, the
// connection fails or stop closes.
func streamBody(c net.Conn, n int, chunked bool, stop <-chan struct{}) {
	piece := bytes.Repeat([]byte("a"), 16<<10)
	for sent := 0; sent < n; sent += len(piece) {
		select {
		case <-stop:
			return
		default:
		}
		var err error
		if chunked {
			_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(piece), piece)
		} else {
			_, err = c.Write(piece)
		}
		if err != nil {
			return
		}
	}
	if chunked {
		io.WriteString(c, "0\r\n\r\n")
	}
}

// h2Case posts a body over HTTP/2 (h2c) and then sends another request on
// the same connection.
func h2Case(t *testing.T, addr string, k replyKind, size int, lat *latencies) {
	var dials atomic.Int32
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: hangBound, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := time.Now()
	resp, err := c.Post("http://"+addr+k.path+"/x", "application/octet-stream", bytes.NewReader(make([]byte, size)))
	if err != nil {
		t.Fatalf("no answer within %v: %v", hangBound, err)
	}
	lat.add(t, k, time.Since(start))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != k.status || !strings.Contains(string(body), k.body) {
		t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, body, k.status, k.body)
	}
	reused := false
	req, _ := http.NewRequest("GET", "http://"+addr+"/direct/next", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	next, err := c.Do(req)
	if err != nil {
		t.Fatalf("next request: %v", err)
	}
	b, _ := io.ReadAll(next.Body)
	next.Body.Close()
	if next.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("next request: got %d %q, want 200 ok", next.StatusCode, b)
	}
	if !reused || dials.Load() != 1 {
		t.Errorf("next request: reused=%v after %d dials, want the first connection", reused, dials.Load())
	}
}

// grpcCase makes two unary calls with a 1 KiB message on one client
// connection; each gets the kind's status.
func grpcCase(t *testing.T, addr string, k replyKind, lat *latencies) {
	var dials atomic.Int32
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), hangBound)
		start := time.Now()
		err := cc.Invoke(ctx, "/"+k.grpc+"/Call", wrapperspb.Bytes(make([]byte, 1<<10)), new(wrapperspb.BytesValue))
		cancel()
		lat.add(t, k, time.Since(start))
		if got := status.Code(err); got != k.code {
			t.Fatalf("call %d: got %v (%v), want %v", i+1, got, err, k.code)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("got %d connections for two calls, want 1", n)
	}
}

// TestLocalReplyResetsHTTP2Upload checks the frames of a local reply to an
// HTTP/2 stream whose body is still coming: the response ends the stream
// (END_STREAM), a RST_STREAM with NO_ERROR tells the client to stop
// sending (RFC 9113 8.1), and the connection serves the next stream.
func TestLocalReplyResetsHTTP2Upload(t *testing.T) {
	addr := freePort(t)
	dir := t.TempDir()
	unused := freePort(t)
	writeConfig(t, dir, "bootstrap.yaml", localReplyBootstrap, map[string]string{
		"PORT": port(addr), "UP": port(unused), "HELD": port(unused), "SLOW": port(unused), "EARLY": port(unused),
	})
	startProxy(t, "-c", filepath.Join(dir, "bootstrap.yaml"))
	waitHTTPPath(t, addr, "/direct/ready")

	for _, tc := range []struct {
		name, path, contentType string
		// want is the response's :status and grpc-status ("" for none).
		status, grpcStatus string
	}{
		{name: "direct response", path: "/direct/x", status: "200"},
		{name: "gRPC fault abort", path: "/grpcabort.Svc/Call", contentType: "application/grpc", status: "200", grpcStatus: "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * hangBound))
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			fr.WriteSettings()
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			field := func(k, v string) { enc.WriteField(hpack.HeaderField{Name: k, Value: v}) }
			field(":method", "POST")
			field(":scheme", "http")
			field(":authority", "gw.example")
			field(":path", tc.path)
			field("content-length", "1048576")
			if tc.contentType != "" {
				field("content-type", tc.contentType)
			}
			start := time.Now()
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
			fr.WriteData(1, false, make([]byte, 16<<10))

			var gotStatus, gotGRPC string
			ended, reset := false, false
			for !reset {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("after %v: %v (ended=%v reset=%v)", time.Since(start), err, ended, reset)
				}
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					for _, hf := range f.Fields {
						switch hf.Name {
						case ":status":
							gotStatus = hf.Value
						case "grpc-status":
							gotGRPC = hf.Value
						}
					}
					ended = ended || f.StreamEnded()
				case *http2.DataFrame:
					ended = ended || f.StreamEnded()
				case *http2.RSTStreamFrame:
					if f.ErrCode != http2.ErrCodeNo {
						t.Fatalf("got RST_STREAM %v, want NO_ERROR", f.ErrCode)
					}
					if !ended {
						t.Fatal("got RST_STREAM before the response ended the stream")
					}
					reset = true
				case *http2.SettingsFrame:
					if !f.IsAck() {
						fr.WriteSettingsAck()
					}
				case *http2.GoAwayFrame:
					t.Fatalf("got GOAWAY %v, want the connection kept", f.ErrCode)
				}
			}
			t.Logf("response and RST_STREAM NO_ERROR after %v", time.Since(start))
			if gotStatus != tc.status || gotGRPC != tc.grpcStatus {
				t.Fatalf("got :status %q grpc-status %q, want %q %q", gotStatus, gotGRPC, tc.status, tc.grpcStatus)
			}

			// The next stream on the same connection.
			hb.Reset()
			field(":method", "GET")
			field(":scheme", "http")
			field(":authority", "gw.example")
			field(":path", "/direct/next")
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("next stream: %v", err)
				}
				if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 3 {
					if s := h.PseudoValue("status"); s != "200" {
						t.Fatalf("next stream: got :status %q, want 200", s)
					}
					return
				}
			}
		})
	}
}
