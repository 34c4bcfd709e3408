package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/proxy/identity"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsterm"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// mtlsListenerBootstrap is a sidecar's inbound port as Istio configures
// mutual TLS: the server certificate is SDS `default`, client
// certificates are required and verified against SDS `ROOTCA`, both
// served by the proxy to itself from its CA client.
const mtlsListenerBootstrap = `node:
  id: sidecar~127.0.0.1~front-0.shop~shop.svc.cluster.local
  metadata: {NAMESPACE: shop, SERVICE_ACCOUNT: front}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: {{ADMIN_PORT}}}
static_resources:
  listeners:
  - name: inbound_mtls
    address:
      socket_address: {address: 127.0.0.1, port_value: {{PORT}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - {name: default, sds_config: {ads: {}, resource_api_version: V3}}
            validation_context_sds_secret_config: {name: ROOTCA, sds_config: {ads: {}, resource_api_version: V3}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: app
          cluster: app
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{APP_PORT}}}
`

// caPlane runs trellisd with its CA on a fixed address, so it can be
// stopped and started again where the proxies look for it.
type caPlane struct {
	t      *testing.T
	opts   trellisd.Options
	cancel context.CancelFunc
	done   chan error
	server *trellisd.Server // the running one
}

func (c *caPlane) start() {
	c.t.Helper()
	ready := make(chan *trellisd.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	o := c.opts
	o.Ready = func(s *trellisd.Server) { ready <- s }
	go func() { c.done <- trellisd.Run(ctx, o) }()
	select {
	case c.server = <-ready:
	case err := <-c.done:
		c.t.Fatalf("trellisd: %v", err)
	case <-time.After(20 * time.Second):
		c.t.Fatal("trellisd not ready")
	}
}

func (c *caPlane) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
		c.cancel = nil
	}
}

// handshake opens an mTLS connection to addr as the client agent's
// identity, checks that the server is want (its SPIFFE ID, chained to
// ROOTCA) and that bytes cross to the app; it returns the server leaf.
func handshake(addr string, client *tlsterm.Store, want string) (*x509.Certificate, error) {
	cert, roots := client.Certificate(identity.CertSecret), client.Roots(identity.RootSecret)
	if cert == nil || roots == nil {
		return nil, errors.New("client has no certificate yet")
	}
	var leaf *x509.Certificate
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf = cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
				return fmt.Errorf("server identity %v, want %s", leaf.URIs, want)
			}
			return nil
		}}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		return nil, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, fmt.Errorf("through the proxy: %w", err)
	}
	if string(buf) != "ping\n" {
		return nil, fmt.Errorf("echo: got %q", buf)
	}
	return leaf, nil
}

// TestProxyWorkloadCertificateFromCA: the real trellis-proxy, given
// local mode's credential on descriptor 3, gets its workload certificate
// from the real trellisd CA and serves it on a listener whose TLS context
// names SDS `default` and `ROOTCA`, as Istio's do; a client with its own
// certificate from the same CA completes mutual TLS and sees the proxy's
// SPIFFE ID. With a short lifetime the proxy renews (a new serial on new
// connections). With trellisd stopped it keeps serving the certificate it
// has and keeps retrying; when trellisd is back it renews again.
func TestProxyWorkloadCertificateFromCA(t *testing.T) {
	dir := t.TempDir()
	front, err := ca.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := ca.NewToken()
	creds := filepath.Join(dir, "workload-credentials")
	if err := ca.WriteCredentials(creds, map[string]ca.Caller{front: {Namespace: "shop", ServiceAccount: "front"}, back: {Namespace: "shop", ServiceAccount: "back"}}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root-cert.pem")
	caAddr := freePort(t)
	os.MkdirAll(filepath.Join(dir, "config"), 0o755)
	plane := &caPlane{t: t, opts: trellisd.Options{ConfigDir: filepath.Join(dir, "config"), XDSAddress: "127.0.0.1:0", Debounce: 10 * time.Millisecond,
		CAAddress: caAddr, CADir: filepath.Join(dir, "ca"), WorkloadCredentials: creds, CARootFile: root, Logf: func(string, ...any) {}}}
	plane.start()
	t.Cleanup(plane.stop)

	app := tcpEcho(t)
	lis, admin := freePort(t), freePort(t)
	bs := strings.NewReplacer("{{ADMIN_PORT}}", port(admin), "{{PORT}}", port(lis), "{{APP_PORT}}", port(app)).Replace(mtlsListenerBootstrap)
	bsPath := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(bsPath, []byte(bs), 0o644); err != nil {
		t.Fatal(err)
	}
	// The lifetime asked for is short so that renewal happens within the
	// test: about every 10 s.
	proxy := startProxyWithCredential(t, front, caAddr, root, []string{"SECRET_TTL=20s"}, "-c", bsPath, "--drain-duration", "1s", "--log-level", "debug")

	// The client: the same CA client in-process, as workload shop/back.
	clientStore := tlsterm.NewStore()
	agent, err := identity.New(identity.Options{Address: caAddr, RootCertFile: root, Namespace: "shop", ServiceAccount: "back",
		Token: func() (string, error) { return back, nil }, TTL: time.Hour, Sink: clientStore})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- agent.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })

	const want = "spiffe://cluster.local/ns/shop/sa/front"
	// waitSerial handshakes until the proxy presents a certificate whose
	// serial is not one of seen.
	waitSerial := func(what string, seen ...string) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last error
		for time.Now().Before(deadline) {
			leaf, err := handshake(lis, clientStore, want)
			if err == nil {
				s := leaf.SerialNumber.String()
				fresh := true
				for _, old := range seen {
					fresh = fresh && s != old
				}
				if fresh {
					return s
				}
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: no new certificate from the proxy (last error %v)\n%s", what, last, proxy.out.String())
		return ""
	}
	first := waitSerial("first certificate")
	second := waitSerial("renewal", first)

	// trellisd goes away: the proxy keeps its certificate, retries.
	plane.stop()
	held := second
	if leaf, err := handshake(lis, clientStore, want); err == nil {
		held = leaf.SerialNumber.String() // a renewal may have just landed
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(proxy.out.String(), "renewing "+want+" failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed renewal logged with trellisd stopped:\n%s", proxy.out.String())
		}
		if leaf, err := handshake(lis, clientStore, want); err != nil || leaf.SerialNumber.String() != held {
			t.Fatalf("with trellisd stopped: got %v, %v; want the certificate in place (serial %s)", leaf, err, held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leaf, err := handshake(lis, clientStore, want); err != nil || leaf.SerialNumber.String() != held {
		t.Fatalf("after a failed renewal: got %v, %v; want the certificate in place (serial %s)", leaf, err, held)
	}

	// trellisd is back (same root from its CA directory): the proxy renews.
	plane.start()
	waitSerial("renewal after trellisd returned", first, second, held)
}
