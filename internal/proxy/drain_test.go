package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestShutdownDrainsInboundKeepsOutbound is a sidecar's SIGTERM: for the
// drain duration the listeners keep accepting; inbound HTTP/1.1 responses
// carry "connection: close" and inbound HTTP/2 connections get a GOAWAY,
// while outbound requests (new ones included) are served as before and a
// request in flight finishes. After the drain the proxy stops listening
// and Serve returns.
func TestShutdownDrainsInboundKeepsOutbound(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "app "+r.URL.Path)
	}))
	route := hcm(vhost(`              - match: {prefix: /}
                route: {cluster: app}
`), "")
	const drain = 3 * time.Second
	r := startProxyDrain(t, []testListener{
		{Name: "inbound", Direction: "INBOUND", HCM: route},
		{Name: "outbound", Host: "127.0.0.2", HCM: route},
	}, []testCluster{{Name: "app", Addrs: []string{be}}}, nil, drain)
	outAddr := r.addr(t, "outbound")
	in, out := "http://"+r.addr(t, "inbound"), "http://"+outAddr

	type result struct {
		body  string
		close bool
		err   error
	}
	get := func(c *http.Client, url string) result {
		resp, err := c.Get(url)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return result{body: string(b), close: resp.Close, err: err}
	}
	fresh := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	}
	// An HTTP/2 connection to the inbound listener, open before SIGTERM.
	h2 := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	h2conn, err := net.Dial("tcp", r.addr(t, "inbound"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := h2.NewClientConn(h2conn)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h2get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", in+path, nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := h2get("/before"); err != nil || body != "app /before" {
		t.Fatalf("HTTP/2 inbound before the drain: got %q, %v", body, err)
	}

	inflight := make(chan result, 1)
	go func() { inflight <- get(fresh(), in+"/slow") }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the app")
	}

	r.cancel() // SIGTERM
	deadline := time.Now().Add(10 * time.Second)
	for !r.p.drains(true) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not start draining")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.p.drains(false) {
		t.Error("a sidecar's shutdown drains its outbound listeners too")
	}

	// During the drain: new inbound connections are accepted and told to
	// close; outbound is untouched; HTTP/2 inbound gets a GOAWAY.
	if got := get(fresh(), in+"/during"); got.err != nil || got.body != "app /during" || !got.close {
		t.Errorf("new inbound request during the drain: got %+v, want app /during with connection: close", got)
	}
	outClient := fresh()
	for i := 0; i < 2; i++ {
		if got := get(outClient, out+"/during"); got.err != nil || got.body != "app /during" || got.close {
			t.Errorf("outbound request %d during the drain: got %+v, want app /during on a kept-alive connection", i, got)
		}
	}
	if body, err := h2get("/during"); err != nil || body != "app /during" {
		t.Errorf("HTTP/2 inbound request during the drain: got %q, %v", body, err)
	}
	for cc.CanTakeNewRequest() {
		if time.Now().After(deadline) {
			t.Fatal("the HTTP/2 inbound connection got no GOAWAY during the drain")
		}
		time.Sleep(5 * time.Millisecond)
	}

	close(release)
	select {
	case got := <-inflight:
		if got.err != nil || got.body != "app /slow" || !got.close {
			t.Errorf("request in flight at SIGTERM: got %+v, want app /slow with connection: close", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request was not answered")
	}
	// A new outbound request after the in-flight one ended, still within
	// the drain: the app may keep calling out until the very end.
	if got := get(fresh(), out+"/late"); got.err != nil || got.body != "app /late" {
		t.Errorf("outbound request late in the drain: got %+v", got)
	}
	done := make(chan error, 1)
	go func() { done <- r.wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(drain + 10*time.Second):
		t.Fatal("the proxy did not stop after the drain")
	}
	if c, err := net.DialTimeout("tcp", outAddr, time.Second); err == nil {
		c.Close()
		t.Error("the outbound listener still accepts after the drain")
	}
}
