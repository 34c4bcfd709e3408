package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// h2cBackend serves HTTP/2 with prior knowledge and reports the protocol.
func h2cBackend(t *testing.T) string {
	h := h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.URL.Path, b)
		w.Header().Set("X-Checksum", "ok")
	}), &http2.Server{})
	return backend(t, h)
}

// TestProtocolTranslation covers HTTP/1.1 downstream to an HTTP/2 cluster
// and h2c downstream to an HTTP/1.1 cluster.
func TestProtocolTranslation(t *testing.T) {
	h2be := h2cBackend(t)
	h1be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.URL.Path, b)
	}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /to-h2}
                route: {cluster: h2}
              - match: {prefix: /}
                route: {cluster: h1}
`), "")}}, []testCluster{{Name: "h2", HTTP2: true, Addrs: []string{h2be}}, {Name: "h1", Addrs: []string{h1be}}}, nil)
	base := "http://" + r.addr(t, "out")

	resp, err := client().Post(base+"/to-h2", "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0 /to-h2 ping" {
		t.Errorf("HTTP/1.1 to h2 cluster: got %q, want HTTP/2.0 /to-h2 ping", b)
	}

	h2client := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) {
		return net.Dial(network, addr)
	}}}
	resp, err = h2client.Post(base+"/plain", "text/plain", strings.NewReader("pong"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "HTTP/1.1 /plain pong" {
		t.Errorf("h2c to HTTP/1.1 cluster: got %s %q, want HTTP/2 and HTTP/1.1 /plain pong", resp.Proto, b)
	}
}

// TestH2RetryAfterConnectFailureKeepsTheBody sends requests whose bodies
// have no length (as gRPC's) to an HTTP/2 cluster with a dead host: the
// failed connect took none of the body, so connect-failure retries reach
// the live host with the whole body.
func TestH2RetryAfterConnectFailureKeepsTheBody(t *testing.T) {
	live := h2cBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route:
                  cluster: h2
                  retry_policy: {retry_on: connect-failure, num_retries: 2, retry_back_off: {base_interval: 0.001s}}
`), "")}}, []testCluster{{Name: "h2", HTTP2: true, Addrs: []string{dead, live}}}, nil)
	h2client := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) {
		return net.Dial(network, addr)
	}}}
	base := "http://" + r.addr(t, "out")
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf("call %d", i)
		// A reader of unknown length: the request carries no content-length.
		req, _ := http.NewRequest("POST", base+"/rpc", io.MultiReader(strings.NewReader(body)))
		resp, err := h2client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "HTTP/2.0 /rpc " + body; resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("call %d: got %d %q, want 200 %q", i, resp.StatusCode, b, want)
		}
	}
}

// TestH2RetryReplaysAStreamedBody: a request body of unknown length (as
// every gRPC call's) sent to an HTTP/2 cluster whose first host answers
// 503 is kept while it streams and replayed whole on the retry, as
// Envoy's retry buffer does; a body past the replay limit is not kept and
// the 503 is the answer, flagged URX.
func TestH2RetryReplaysAStreamedBody(t *testing.T) {
	var busyCalls atomic.Int64
	streamBusy := make(chan struct{}, 16)
	busy := backend(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			// Answers before the body has all come.
			streamBusy <- struct{}{}
			w.WriteHeader(503)
			return
		}
		io.Copy(io.Discard, r.Body)
		busyCalls.Add(1)
		w.WriteHeader(503)
	}), &http2.Server{}))
	live := h2cBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route:
                  cluster: h2
                  retry_policy: {retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 0.001s}, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, typed_config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]}
`), `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: `+logPath+`
              log_format: {text_format_source: {inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\n"}}
`)}}, []testCluster{{Name: "h2", HTTP2: true, Addrs: []string{busy, live}}}, nil)
	h2client := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) {
		return net.Dial(network, addr)
	}}}
	base := "http://" + r.addr(t, "out")
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", base+path, io.MultiReader(strings.NewReader(body)))
		resp, err := h2client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for i := 0; i < 10; i++ {
		body := fmt.Sprintf("call %d", i)
		if code, got := post("/rpc", body); code != 200 || got != "HTTP/2.0 /rpc "+body {
			t.Fatalf("call %d: got %d %q, want 200 %q", i, code, got, "HTTP/2.0 /rpc "+body)
		}
	}
	if busyCalls.Load() == 0 {
		t.Fatal("the busy host was never tried; the test checks nothing")
	}
	if !waitForLog(logPath, "/rpc 200 - 2") {
		b, _ := os.ReadFile(logPath)
		t.Errorf("access log lacks a retried 200:\n%s", b)
	}
	// A body still streaming when the busy host answers (a client
	// streaming call): the retry sends what had come, then the rest.
	var streamedFirst atomic.Int64
	for i := 0; i < 20 && streamedFirst.Load() < 2; i++ {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte("part one, "))
			select {
			case <-streamBusy:
				streamedFirst.Add(1)
			case <-time.After(200 * time.Millisecond): // the live host was picked first
			}
			pw.Write([]byte("part two"))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/stream", pr)
		resp, err := h2client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "HTTP/2.0 /stream part one, part two" {
			t.Fatalf("streamed call %d: got %d %q, want 200 with the whole body", i, resp.StatusCode, b)
		}
	}
	if streamedFirst.Load() == 0 {
		t.Fatal("the busy host never got a streamed call first; the test checks nothing")
	}
	if !waitForLog(logPath, "/stream 200 - 2") {
		b, _ := os.ReadFile(logPath)
		t.Errorf("access log lacks a retried streamed call:\n%s", b)
	}
	// Past the replay limit the body is not kept: no retry of a 503.
	big := strings.Repeat("x", 128<<10)
	for i := 0; i < 4; i++ {
		if code, got := post("/big", big); code == 200 && got != "HTTP/2.0 /big "+big {
			t.Fatalf("big body: got a 200 with %d bytes, want the whole body echoed", len(got))
		}
	}
	if !waitForLog(logPath, "/big 503 URX 1") {
		b, _ := os.ReadFile(logPath)
		t.Errorf("access log lacks an unretried 503 URX for the big body:\n%s", b)
	}
}
