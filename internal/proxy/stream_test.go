package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// wsBackend answers an Upgrade with 101 and then echoes upper-cased bytes.
func wsBackend(t *testing.T) string {
	return backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				c.Write([]byte(strings.ToUpper(string(buf[:n]))))
			}
			if err != nil {
				return
			}
		}
	}))
}

func TestWebSocketUpgrade(t *testing.T) {
	be := wsBackend(t)
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: ws}
`), "")}}, []testCluster{{Name: "ws", Addrs: []string{be}}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("got %d upgrade=%q, want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"hello", "again"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != strings.ToUpper(msg) {
			t.Errorf("got %q, want %q", buf, strings.ToUpper(msg))
		}
	}
}

// halfCloseServer reads until EOF, then answers with what it read and
// closes.
func halfCloseServer(t *testing.T) string {
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
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got %d bytes: %s", len(b), b)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTCPProxyHalfClose(t *testing.T) {
	a, b := halfCloseServer(t), halfCloseServer(t)
	r := startProxy(t, []testListener{{Name: "redis", TCP: `          stat_prefix: redis
          weighted_clusters:
            clusters:
            - {name: a, weight: 1}
            - {name: b, weight: 1}
          idle_timeout: 5s
`}}, []testCluster{{Name: "a", Addrs: []string{a}}, {Name: "b", Addrs: []string{b}}}, nil)
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", r.addr(t, "redis"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "PING")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "got 4 bytes: PING" {
			t.Fatalf("got %q, %v, want the answer after our half-close", got, err)
		}
	}
}

func TestTCPProxyIdleTimeout(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	r := startProxy(t, []testListener{{Name: "tcp", TCP: `          stat_prefix: idle
          cluster: silent
          idle_timeout: 0.2s
`}}, []testCluster{{Name: "silent", Addrs: []string{ln.Addr().String()}}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("got %v, want EOF once the idle timeout closed the connection", err)
	}
}

func TestOutlierEjectsFailingEndpoint(t *testing.T) {
	good := backend(t, nameHandler("good"))
	bad := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: svc}
`), "")}}, []testCluster{{Name: "svc", Addrs: []string{good, bad}, Extra: `    outlier_detection:
      consecutive_5xx: 3
      interval: 0.05s
      base_ejection_time: 30s
      max_ejection_percent: 100`}}, nil)
	c := client()
	base := "http://" + r.addr(t, "out")
	fails := 0
	for i := 0; i < 20; i++ {
		if status, _, _ := get(t, c, base+"/", nil); status == 503 {
			fails++
		}
	}
	if fails > 3 {
		t.Fatalf("got %d 503s in 20 calls, want at most 3 before ejection", fails)
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 50; i++ {
		if status, body, _ := get(t, c, base+"/", nil); status != 200 || body != "good" {
			t.Fatalf("call %d after ejection: got %d %q, want 200 good", i, status, body)
		}
	}
}

func TestBadListenerIsNACKedAndOldKeepsServing(t *testing.T) {
	be := backend(t, nameHandler("old"))
	r := startProxy(t, nil, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	good := listenerAny(t, "dyn", "127.0.0.1:0", hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), ""))
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"dyn": good}); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "dyn")
	bad := listenerAny(t, "dyn", "127.0.0.1:0", hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), `          stream_idle_timeout: 1s
`))
	bad = withHTTPFilter(t, bad, "envoy.filters.http.unknown")
	err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"dyn": bad})
	if err == nil || !strings.Contains(err.Error(), "http_filters[0].name") {
		t.Fatalf("got %v, want a NACK naming http_filters[0].name", err)
	}
	if got := r.addr(t, "dyn"); got != addr {
		t.Errorf("got listener at %s, want it unchanged at %s", got, addr)
	}
	if status, body, _ := get(t, client(), "http://"+addr+"/", nil); status != 200 || body != "old" {
		t.Errorf("got %d %q, want the old listener serving 200 old", status, body)
	}
}

func TestRemovedListenerDrainsInFlight(t *testing.T) {
	release := make(chan struct{})
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	}))
	r := startProxy(t, nil, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	l := listenerAny(t, "dyn", "127.0.0.1:0", hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), ""))
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"dyn": l}); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "dyn")
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client().Get("http://" + addr + "/")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	time.Sleep(100 * time.Millisecond) // let the request reach the backend
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{}); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("removed listener still accepts connections")
	}
	close(release)
	if got := <-done; got.status != 200 || got.body != "finished" {
		t.Errorf("in-flight request got %d %q, want 200 finished", got.status, got.body)
	}
}

// withHTTPFilter prepends an HTTP filter to the listener's first HCM.
func withHTTPFilter(t *testing.T, a *anypb.Any, name string) *anypb.Any {
	t.Helper()
	var l listenerv3.Listener
	if err := a.UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	f := l.FilterChains[0].Filters[0]
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: name}}, h.HttpFilters...)
	tc, _ := anypb.New(&h)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tc}
	out, _ := anypb.New(&l)
	return out
}

// listenerAny builds an LDS resource with one HCM chain.
func listenerAny(t *testing.T, name, addr, hcmBody string) *anypb.Any {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	y := fmt.Sprintf(`name: %s
address:
  socket_address: {address: %s, port_value: %s}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
%s`, name, host, port, indent(strings.TrimLeft(dedent(hcmBody, 10), "\n"), 6))
	var l listenerv3.Listener
	if err := yamlToProto([]byte(y), &l); err != nil {
		t.Fatalf("listener yaml: %v\n%s", err, y)
	}
	a, err := anypb.New(&l)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func dedent(s string, n int) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if len(l) >= n && strings.TrimSpace(l[:n]) == "" {
			lines[i] = l[n:]
		}
	}
	return strings.Join(lines, "\n")
}
