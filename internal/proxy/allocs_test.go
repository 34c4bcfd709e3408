package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawBackend answers every HTTP/1.1 request on a connection with a canned
// response, without allocating per request.
func rawBackend(t testing.TB, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 8192)
				for {
					// Read a head, then Content-Length bytes of body.
					n := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) > 16 && (line[0] == 'c' || line[0] == 'C') && bytes.EqualFold(line[:15], []byte("content-length:")) {
							n, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
						}
						if len(line) <= 2 {
							break
						}
					}
					br.Discard(n)
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// rawClient sends one request and reads one response with fixed buffers.
type rawClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
	buf []byte
}

func newRawClient(t testing.TB, addr, req string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{c: c, br: bufio.NewReaderSize(c, 8192), req: []byte(req), buf: make([]byte, 8192)}
}

func (r *rawClient) do(t testing.TB) {
	if _, err := r.c.Write(r.req); err != nil {
		t.Fatal(err)
	}
	n := -1
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			t.Fatal(err)
		}
		if len(line) > 16 && bytes.EqualFold(line[:16], []byte("content-length: ")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
		}
		if len(line) <= 2 {
			break
		}
	}
	if n < 0 {
		t.Fatal("response without content-length")
	}
	if _, err := io.ReadFull(r.br, r.buf[:n]); err != nil {
		t.Fatal(err)
	}
}

func onePOST(body int) string {
	return "POST /echo HTTP/1.1\r\nHost: bill-service:9999\r\nUser-Agent: fortio.org/fortio-1.68.2\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
		strconv.Itoa(body) + "\r\n\r\n" + string(bytes.Repeat([]byte("x"), body))
}

// TestRequestPathAllocs guards the HTTP/1.1 hot path: a keep-alive POST
// through an outbound connection manager (route, Istio's default retry
// policy, x-request-id, telemetry) to a pooled upstream connection.
func TestRequestPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation guard")
	}
	be := rawBackend(t, string(bytes.Repeat([]byte("y"), 1024)))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route:
                  cluster: be
                  timeout: 0s
                  retry_policy:
                    retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
                    num_retries: 2
                    retriable_status_codes: [503]
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(t, r.addr(t, "out"), onePOST(1024))
	for i := 0; i < 50; i++ { // warm pools, series and connections
		c.do(t)
	}
	time.Sleep(10 * time.Millisecond)
	got := testing.AllocsPerRun(500, func() { c.do(t) })
	// Client and backend allocate nothing; everything counted is the
	// proxy's (both directions, telemetry included).
	const max = 1
	if got > max {
		t.Errorf("got %.1f allocations per proxied request, want at most %d", got, max)
	}
	t.Logf("%.1f allocations per proxied request", got)
}

// statsFilterHeaderTags is an istio.stats filter as trellisd sends it for
// a Telemetry upserting tags from request attributes and removing one.
const statsFilterHeaderTags = `          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/stats.PluginConfig
              value:
                metrics:
                - name: requests_total
                  dimensions: {agent: "request.headers['user-agent'] | 'none'", path: request.url_path}
                  tags_to_remove: [request_protocol]
`

// TestRequestPathAllocsHeaderTags is TestRequestPathAllocs with
// request-valued metric tags: once a combination of values has been seen
// the request still allocates no more than the default path.
func TestRequestPathAllocsHeaderTags(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation guard")
	}
	be := rawBackend(t, string(bytes.Repeat([]byte("y"), 1024)))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcmFilters(statsFilterHeaderTags+faultFilter+corsFilter+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(t, r.addr(t, "out"), onePOST(1024))
	for i := 0; i < 50; i++ {
		c.do(t)
	}
	time.Sleep(10 * time.Millisecond)
	got := testing.AllocsPerRun(500, func() { c.do(t) })
	const max = 1
	if got > max {
		t.Errorf("got %.1f allocations per proxied request with header tags, want at most %d", got, max)
	}
	var b bytes.Buffer
	r.p.Telemetry.WritePrometheus(&b)
	if out := b.String(); !strings.Contains(out, `agent="fortio.org/fortio-1.68.2"`) || !strings.Contains(out, `path="/echo"`) {
		t.Errorf("istio_requests_total without the header tags:\n%s", out)
	}
	t.Logf("%.1f allocations per proxied request with header tags", got)
}

// BenchmarkRequestPathHeaderTags is BenchmarkRequestPath with the
// istio.stats config of TestRequestPathAllocsHeaderTags.
func BenchmarkRequestPathHeaderTags(b *testing.B) {
	be := rawBackend(b, string(bytes.Repeat([]byte("y"), 1024)))
	r := startProxy(b, []testListener{{Name: "out", HCM: hcmFilters(statsFilterHeaderTags+faultFilter+corsFilter+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(b, r.addr(b, "out"), onePOST(1024))
	c.do(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.do(b)
	}
}

// BenchmarkRequestPath measures one keep-alive POST (1 KiB each way)
// through one in-process proxy hop.
func BenchmarkRequestPath(b *testing.B) {
	be := rawBackend(b, string(bytes.Repeat([]byte("y"), 1024)))
	r := startProxy(b, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(b, r.addr(b, "out"), onePOST(1024))
	c.do(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.do(b)
	}
}

// BenchmarkRequestPathStdlib is the same exchange through net/http's server
// and httputil.ReverseProxy (Transport with separate read/write loops per
// connection), the baseline the hand-written HTTP/1.1 path is measured
// against.
func BenchmarkRequestPathStdlib(b *testing.B) {
	be := rawBackend(b, string(bytes.Repeat([]byte("y"), 1024)))
	u, _ := url.Parse("http://" + be)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c := newRawClient(b, ln.Addr().String(), onePOST(1024))
	c.do(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.do(b)
	}
}
