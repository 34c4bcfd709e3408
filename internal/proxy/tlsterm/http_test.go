package tlsterm

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"golang.org/x/net/http2"
)

// oneConnListener hands a single, already terminated connection to
// http.Serve.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// TestHTTPOverTermination drives the flow tlsterm sits in: a TLS listener
// terminates with the gateway's context, the negotiated ALPN picks HTTP/2
// or HTTP/1.1, and the request reaches the backend handler — what
// `curl --resolve httpsserver.zhongmingmao.io:443:GW https://httpsserver.zhongmingmao.io`
// does against the https-gateway scenario.
func TestHTTPOverTermination(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	c := mustCompile(t, gatewayContext(), store)
	addr := serveHTTP(t, c)
	for _, tc := range []struct {
		name      string
		h2        bool
		wantProto string
	}{
		{"h2", true, "HTTP/2.0"},
		{"http/1.1", false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: ca.pool()},
				ForceAttemptHTTP2: tc.h2,
				// --resolve: the host name goes in SNI and Host, the
				// connection goes to the listener.
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				},
			}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + gatewayHost + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if want := "httpserver " + tc.wantProto + " " + gatewayHost; string(body) != want {
				t.Errorf("body: got %q, want %q", body, want)
			}
			if resp.Proto != tc.wantProto {
				t.Errorf("response proto: got %s, want %s", resp.Proto, tc.wantProto)
			}
		})
	}
}

// serveHTTP runs a TLS listener on 127.0.0.1:0 terminating with c and
// serving a backend that echoes the protocol and host, over HTTP/2 when
// ALPN chose h2 and HTTP/1.1 otherwise.
func serveHTTP(t *testing.T, c *Context) string {
	t.Helper()
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "httpserver "+r.Proto+" "+r.Host)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	h2 := &http2.Server{}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				tc, err := c.Handshake(ctx, conn)
				cancel()
				if err != nil {
					conn.Close()
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == "h2" {
					h2.ServeConn(tc, &http2.ServeConnOpts{Handler: backend})
					return
				}
				http.Serve(&oneConnListener{conn: tc, done: done}, backend)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCurlInterop runs the scenario's own client, curl (OpenSSL), against
// the terminating listener: SIMPLE over HTTP/2 and HTTP/1.1, and MUTUAL
// with and without a client certificate.
func TestCurlInterop(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed; TestHTTPOverTermination covers the flow with Go's client")
	}
	ca := newCA(t, "ca")
	client := ca.issue(t, "client", leafOpts{dns: []string{"client.example.com"}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", ca.pem), write("client.pem", client.certPEM), write("client.key", client.keyPEM)
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{
		credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})),
		caName:   caSecret(ca.pem),
	}); err != nil {
		t.Fatal(err)
	}
	simple := serveHTTP(t, mustCompile(t, gatewayContext(), store))
	mutual := serveHTTP(t, mustCompile(t, mutualContext(), store))
	for _, tc := range []struct {
		name     string
		addr     string
		args     []string
		wantBody string // "" means curl must fail
	}{
		{"simple h2", simple, []string{"--http2"}, "httpserver HTTP/2.0 " + gatewayHost},
		{"simple http1.1", simple, []string{"--http1.1"}, "httpserver HTTP/1.1 " + gatewayHost},
		{"mutual with client cert", mutual, []string{"--cert", certFile, "--key", keyFile}, "httpserver HTTP/2.0 " + gatewayHost},
		{"mutual without client cert", mutual, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, port, err := net.SplitHostPort(tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-sS", "--max-time", "10", "--cacert", caFile,
				"--resolve", gatewayHost + ":" + port + ":127.0.0.1"}, tc.args...)
			args = append(args, "https://"+gatewayHost+":"+port+"/")
			out, err := exec.Command(curl, args...).CombinedOutput()
			if tc.wantBody == "" {
				if err == nil {
					t.Fatalf("curl succeeded with %q, want a failed handshake", out)
				}
				return
			}
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			// Host carries the port curl connected to.
			if want := tc.wantBody + ":" + port; string(out) != want {
				t.Errorf("curl output: got %q, want %q", out, want)
			}
		})
	}
}
