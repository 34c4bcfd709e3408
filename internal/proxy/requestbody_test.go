package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// TestExpectContinueToHTTP2Cluster sends HTTP/1.1 requests with
// Expect: 100-continue to an HTTP/2 cluster, whose transport reads the body
// on its own goroutine: the 100 Continue still comes first, then the
// answer, also from an upstream that answers without reading the body
// (the client sends the body after that answer, or before it).
func TestExpectContinueToHTTP2Cluster(t *testing.T) {
	early := backend(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}), &http2.Server{}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /early}
                route: {cluster: early}
              - match: {prefix: /}
                route: {cluster: h2}
`), "")}}, []testCluster{{Name: "h2", HTTP2: true, Addrs: []string{h2cBackend(t)}}, {Name: "early", HTTP2: true, Addrs: []string{early}}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "PUT /early HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("early request %d: got %q, want 100 Continue first", i+1, line)
		}
		br.ReadString('\n')
		if i == 1 {
			io.WriteString(c, "ping")
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if i == 0 {
			// The body comes after the answer: the transport's read of
			// it was blocked and is broken off; the proxy drains it.
			io.WriteString(c, "ping")
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Close {
			t.Fatalf("early request %d: got %d (close %v), want 413 on a kept connection", i+1, resp.StatusCode, resp.Close)
		}
		io.WriteString(c, "PUT /to-h2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		line, _ = br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("request %d: got %q, want 100 Continue first", i+1, line)
		}
		br.ReadString('\n')
		io.WriteString(c, "ping")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "HTTP/2.0 /to-h2 ping" || resp.Close {
			t.Fatalf("request %d: got %q (close %v), want HTTP/2.0 /to-h2 ping on a kept connection", i+1, b, resp.Close)
		}
	}
}

// TestLocalReplyPipelinedBody pipelines requests with bodies behind a
// direct response: each is answered and its body dropped, and the next
// request is read from the right place.
func TestLocalReplyPipelinedBody(t *testing.T) {
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: "ok"}}
`), "")}}, nil, nil)
	c, err := net.Dial("tcp", r.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" || resp.Close {
			t.Fatalf("response %d: got %d %q (close %v), want 200 ok on a kept connection", i, resp.StatusCode, b, resp.Close)
		}
	}
}
