package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileHTTP1Clients sends the request shapes used for smuggling and
// header abuse straight to a listener and checks that each is refused as
// Envoy refuses it: the status, a closed connection, and nothing reaching
// the upstream.
func TestHostileHTTP1Clients(t *testing.T) {
	var reached atomic.Int64
	var smuggled atomic.Pointer[string]
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if r.URL.Path != "/" {
			p := r.URL.Path
			smuggled.Store(&p)
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "app")
	}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	addr := r.addr(t, "out")

	manyHeaders := strings.Repeat("X-A: b\r\n", 101)
	tests := []struct {
		name, in string
		status   int
		// started: the head was valid and may have gone upstream before
		// the body broke; the upstream sees at most that request, reset.
		started bool
	}{
		{name: "content-length and chunked", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "chunked and content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", status: 400},
		{name: "two different content-lengths", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabcGET /smuggled HTTP/1.1\r\n\r\n", status: 400},
		{name: "content-length list", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 30\r\n\r\nabc", status: 400},
		{name: "content-length not a number", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", status: 400},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "space before colon", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", status: 400},
		{name: "nul in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", status: 400},
		{name: "transfer coding other than chunked", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501},
		{name: "chunked not last", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", status: 501},
		{name: "bad chunk size", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, started: true},
		{name: "header block over 60 KiB", in: "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 61<<10) + "\r\n\r\n", status: 431},
		{name: "more than 100 headers", in: "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders + "\r\n", status: 431},
		{name: "request line with spaces in target", in: "GET / /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reached.Load()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			go io.WriteString(c, tt.in)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("got status %d, want %d", resp.StatusCode, tt.status)
			}
			if !resp.Close {
				t.Errorf("got no connection: close")
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("got %v after the refusal, want the connection closed (io.EOF)", err)
			}
			want := int64(0)
			if tt.started {
				want = 1
			}
			if n := reached.Load() - before; n > want {
				t.Errorf("%d requests reached the upstream, want at most %d", n, want)
			}
			if p := smuggled.Load(); p != nil {
				t.Errorf("the upstream got a request for %s", *p)
			}
		})
	}
	// The listener still serves a well-formed request afterwards.
	resp, err := client().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d for a normal request after the hostile ones, want 200", resp.StatusCode)
	}
}

// TestRequestHeadersTimeout trickles a request head (slowloris): with the
// HCM's request_headers_timeout the proxy answers 408 and closes; a client
// that is merely idle between requests is not affected by it.
func TestRequestHeadersTimeout(t *testing.T) {
	be := backend(t, nameHandler("app"))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "          request_headers_timeout: 0.3s\n")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	addr := r.addr(t, "out")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// An idle pause longer than the headers timeout before a request is
	// fine: the timer starts at the head's first byte.
	time.Sleep(500 * time.Millisecond)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first request: got %d, want 200", resp.StatusCode)
	}

	// Now trickle a head one line at a time, slower than the timeout.
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, part := range []string{"GET / HTTP/1.1\r\n", "Host: a\r\n", "X-A: 1\r\n", "X-B: 2\r\n", "X-C: 3\r\n", "\r\n"} {
			if _, err := io.WriteString(c, part); err != nil {
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("trickled head: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 408 || !resp.Close {
		t.Fatalf("trickled head: got %d close=%v, want 408 with connection: close", resp.StatusCode, resp.Close)
	}
	t.Logf("408 after %v", time.Since(start).Round(time.Millisecond))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("got %v after the 408, want the connection closed", err)
	}
	<-done
}
