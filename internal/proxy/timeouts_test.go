package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The downstream HTTP/1.1 connection re-arms its read deadline only when it
// would be wrong (not once per request): these tests drive the idle and
// stream idle timeouts through that bookkeeping.

// timeoutProxy starts a proxy whose HCM has the given timeout options, in
// front of a backend that echoes the request body.
func timeoutProxy(t *testing.T, opts string) string {
	t.Helper()
	echo := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: echo}
`), opts)}}, []testCluster{{Name: "echo", Addrs: []string{echo}}}, nil)
	return r.addr(t, "out")
}

// post sends a keep-alive POST with the body split in two writes (the
// second after pause, so that it is not read with the head) and returns
// the answer's body.
func post(t *testing.T, c net.Conn, br *bufio.Reader, body string, pause time.Duration) string {
	t.Helper()
	head := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n"
	half := len(body) / 2
	if _, err := io.WriteString(c, head+body[:half]); err != nil {
		t.Fatal(err)
	}
	if pause > 0 {
		time.Sleep(pause)
	}
	if _, err := io.WriteString(c, body[half:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got status %d, %v, want 200", resp.StatusCode, err)
	}
	return string(got)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// waitClosed reads until the proxy closes c (any answer bytes are allowed)
// and fails when c is still open after a generous wait.
func waitClosed(t *testing.T, c net.Conn, why string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after 10 s, want it closed by %s", why)
	}
}

func TestHTTPIdleTimeoutClosesKeepAlive(t *testing.T) {
	addr := timeoutProxy(t, `          common_http_protocol_options: {idle_timeout: 0.3s}
`)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, body := range []string{"one", "two-two", "three-three-three"} {
		if got := post(t, c, br, body, 0); got != body {
			t.Fatalf("request %d: got %q, want %q", i, got, body)
		}
	}
	waitClosed(t, c, "the idle timeout")
}

func TestHTTPStreamIdleTimeoutStalledBody(t *testing.T) {
	addr := timeoutProxy(t, `          stream_idle_timeout: 0.3s
`)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half of a 100-byte body, then nothing.
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 50))
	waitClosed(t, c, "the stream idle timeout")
}

func TestHTTPStreamThenIdleDeadline(t *testing.T) {
	// A body that arrives after the head arms the short stream idle
	// deadline; waiting between requests must then be bounded by the
	// longer idle timeout again, not by the stream deadline left behind.
	addr := timeoutProxy(t, `          stream_idle_timeout: 0.5s
          common_http_protocol_options: {idle_timeout: 30s}
`)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	body := strings.Repeat("0123456789", 20)
	for i := 0; i < 3; i++ {
		if got := post(t, c, br, body, 20*time.Millisecond); got != body {
			t.Fatalf("request %d: got %q, want the body echoed", i, got)
		}
		// Idle for longer than the stream idle timeout.
		time.Sleep(800 * time.Millisecond)
	}
}
