package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

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
