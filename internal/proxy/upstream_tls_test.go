package proxy

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamTLS originates TLS to an HTTPS backend (DestinationRule tls
// SIMPLE: trusted CA file, SNI, SAN) over HTTP/1.1 and HTTP/2 (ALPN h2):
// the backend sees the SNI and the protocol, and keep-alive reuses one TLS
// connection for every request (the route timeout bounds each request, not
// the connection).
func TestUpstreamTLS(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s sni=%s", r.Proto, r.TLS.ServerName)
			}))
			srv.EnableHTTP2 = h2
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			ca := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
			tlsYAML := fmt.Sprintf(`    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: example.com
        common_tls_context:
          validation_context:
            trusted_ca: {filename: %s}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {exact: example.com}`, ca)
			r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 5s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{srv.Listener.Addr().String()}, HTTP2: h2, Extra: tlsYAML}}, nil)
			want := "HTTP/1.1 sni=example.com"
			if h2 {
				want = "HTTP/2.0 sni=example.com"
			}
			c := client()
			for i := 0; i < 3; i++ {
				resp, err := c.Get("http://" + r.addr(t, "out") + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != want {
					t.Fatalf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, b, want)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("got %d TLS connections for 3 sequential requests, want 1 reused", n)
			}
		})
	}
}

// TestTCPProxyOriginatesTLS: a tcp_proxy to a cluster with a TLS transport
// socket (DestinationRule tls SIMPLE on a TCP port) wraps the client's
// plaintext in TLS to the backend, with the cluster's SNI.
func TestTCPProxyOriginatesTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate
	cert := srv.TLS.Certificates[0]
	srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
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
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				b, _ := io.ReadAll(tc)
				fmt.Fprintf(tc, "sni=%s %s", tc.ConnectionState().ServerName, b)
			}()
		}
	}()
	r := startProxy(t, []testListener{{Name: "db", TCP: `          stat_prefix: db
          cluster: db
`}}, []testCluster{{Name: "db", Addrs: []string{ln.Addr().String()}, Extra: `    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: db.example.com`}}, nil)
	c, err := net.Dial("tcp", r.addr(t, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PING")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "sni=db.example.com PING" {
		t.Fatalf("got %q, %v, want the backend's answer over TLS with SNI db.example.com", got, err)
	}
}
