package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTP1ProxyBasics(t *testing.T) {
	var conns atomic.Int64
	var seen atomic.Pointer[http.Header]
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		h.Set("X-Path", r.URL.RequestURI())
		seen.Store(&h)
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("X-Hop", "drop-me")
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // forces chunked encoding
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_ = ln.Close()
	counted := backendCountingConns(t, be, &conns)
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 5s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{counted}}}, nil)
	c := client()
	base := "http://" + r.addr(t, "out")

	tests := []struct {
		name, method, path, body, want string
		chunkedReq                     bool
	}{
		{name: "get", method: "GET", path: "/a?x=1", want: "GET /a "},
		{name: "post with length", method: "POST", path: "/echo", body: "hello", want: "POST /echo hello"},
		{name: "chunked response", method: "POST", path: "/chunked", body: "abc", want: "POST /chunked abc"},
		{name: "chunked request", method: "PUT", path: "/up", body: strings.Repeat("z", 100000), want: "PUT /up " + strings.Repeat("z", 100000), chunkedReq: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunkedReq {
					body = io.MultiReader(strings.NewReader(tt.body[:10]), strings.NewReader(tt.body[10:]))
				}
			}
			req, _ := http.NewRequest(tt.method, base+tt.path, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != tt.want {
				t.Fatalf("got %d %.60q, want 200 %.60q", resp.StatusCode, got, tt.want)
			}
			if resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
				t.Errorf("got no x-envoy-upstream-service-time")
			}
			h := *seen.Load()
			if h.Get("X-Request-Id") == "" || h.Get("X-Forwarded-Proto") != "http" {
				t.Errorf("got x-request-id %q x-forwarded-proto %q, want a generated id and http", h.Get("X-Request-Id"), h.Get("X-Forwarded-Proto"))
			}
			if h.Get("X-Envoy-Expected-Rq-Timeout-Ms") != "5000" {
				t.Errorf("got x-envoy-expected-rq-timeout-ms %q, want 5000", h.Get("X-Envoy-Expected-Rq-Timeout-Ms"))
			}
			if tt.path == "/a?x=1" && h.Get("X-Path") != "/a?x=1" {
				t.Errorf("got upstream path %q, want /a?x=1", h.Get("X-Path"))
			}
		})
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("got %d upstream connections for sequential requests, want 1 (keep-alive pooling)", n)
	}
}

// backendCountingConns fronts addr with a TCP relay that counts
// connections.
func backendCountingConns(t *testing.T, addr string, n *atomic.Int64) string {
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
			n.Add(1)
			go func() {
				u, err := net.Dial("tcp", addr)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHTTP1ExpectContinueAndPipelining(t *testing.T) {
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("got %q, want 100 Continue first", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "ok")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "/e:ok" {
		t.Fatalf("got %q, want /e:ok", b)
	}
	// Two pipelined requests on the same connection.
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/1:", "/2:"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}
