package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/http2"
)

// keepAliveGet sends one GET on an open connection and returns the body
// and whether the response asked to close.
func keepAliveGet(t *testing.T, c net.Conn, br *bufio.Reader) (string, bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), resp.Close
}

// TestListenerUpdateRetiresOldVersion: LDS re-sending a listener unchanged
// keeps its keep-alive connections; changing it retires the old version
// as Envoy drains it: an open connection's next request is answered by
// the old version with "connection: close", new connections get the new
// version, and a connection left idle is closed after the drain time.
func TestListenerUpdateRetiresOldVersion(t *testing.T) {
	r := startProxy(t, nil, nil, nil) // drain time 1 s
	p := r.p
	if err := p.Apply(resourcev3.RouteType, directRoutes(t, "r1", "r2")); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r1")); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "l")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if body, closing := keepAliveGet(t, c, br); body != "r1" || closing {
		t.Fatalf("first request: got %q close=%v, want r1 on a kept connection", body, closing)
	}

	// Unchanged: the connection stays.
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r1")); err != nil {
		t.Fatal(err)
	}
	if body, closing := keepAliveGet(t, c, br); body != "r1" || closing {
		t.Fatalf("after an unchanged re-send: got %q close=%v, want r1 on the same connection", body, closing)
	}

	// Changed: the old version answers the open connection once, closing.
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r2")); err != nil {
		t.Fatal(err)
	}
	if body, closing := keepAliveGet(t, c, br); body != "r1" || !closing {
		t.Fatalf("after the change, on the old connection: got %q close=%v, want r1 with connection: close", body, closing)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("old connection: got %v, want it closed", err)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	if body, closing := keepAliveGet(t, c2, br2); body != "r2" || closing {
		t.Fatalf("new connection: got %q close=%v, want r2", body, closing)
	}

	// An idle connection of a retired version closes after the drain.
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r1")); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := br2.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection of the retired version: got %v, want io.EOF", err)
	}
	t.Logf("idle connection closed %v after the update", time.Since(start).Round(10*time.Millisecond))
}

// TestH2StreamsOfARetiredListenerVersion: on an HTTP/2 connection of a
// listener version that retired, a new stream is still proxied by the old
// version (its context ending with the version's is not a client reset).
func TestH2StreamsOfARetiredListenerVersion(t *testing.T) {
	r := startProxy(t, nil, nil, nil) // drain time 1 s
	p := r.p
	if err := p.Apply(resourcev3.RouteType, directRoutes(t, "r1", "r2")); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r1")); err != nil {
		t.Fatal(err)
	}
	h := dialH2(t, r.addr(t, "l"), true)
	if err := h.request(1, h.block("/")); err != nil {
		t.Fatal(err)
	}
	if o := h.await(1); o.status != "200" || o.body != "r1" {
		t.Fatalf("before the change: got %+v, want 200 r1", o)
	}
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r2")); err != nil {
		t.Fatal(err)
	}
	if err := h.request(3, h.block("/")); err != nil {
		t.Fatal(err)
	}
	o := h.await(3)
	if o.status != "200" || o.body != "r1" {
		t.Errorf("a new stream after the change: got %+v, want 200 r1 from the old version", o)
	}
	// The client is told to move before the drain time closes the
	// connection: a GOAWAY that lets the streams in flight finish.
	g := o.goAway
	if g == nil {
		g = h.drain()
	}
	if g == nil || g.ErrCode != http2.ErrCodeNo || g.LastStreamID < 3 {
		t.Errorf("the retired version's HTTP/2 connection: GOAWAY %+v, want a graceful one (NO_ERROR, last stream >= 3) before it closes", g)
	}
}
