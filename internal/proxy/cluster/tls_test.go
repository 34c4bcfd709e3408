package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func tlsSocket(t *testing.T, uc *tlsv3.UpstreamTlsContext) *corev3.TransportSocket {
	t.Helper()
	a, err := anypb.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{Name: tlsTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

func TestUpstreamTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	san := func(name string) []*tlsv3.SubjectAltNameMatcher {
		return []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}}}}
	}
	vc := func(sans []*tlsv3.SubjectAltNameMatcher) *tlsv3.CommonTlsContext {
		return &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}}, MatchTypedSubjectAltNames: sans}}}
	}
	tests := []struct {
		name       string
		ctx        *tlsv3.UpstreamTlsContext
		wantReject string
		wantDial   string // "" = handshake succeeds
	}{
		{"no validation context verifies nothing", &tlsv3.UpstreamTlsContext{Sni: "anything"}, "", ""},
		{"trusted ca and matching san", &tlsv3.UpstreamTlsContext{Sni: "example.com", CommonTlsContext: vc(san("example.com"))}, "", ""},
		{"trusted ca and wrong san", &tlsv3.UpstreamTlsContext{CommonTlsContext: vc(san("other.example"))}, "", "match none of"},
		{"trusted ca checks the sni host name", &tlsv3.UpstreamTlsContext{Sni: "wrong.host", CommonTlsContext: vc(nil)}, "", "certificate is valid for"},
		{"missing ca file", &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/nonexistent/ca.pem"}}}}}},
			"validation_context.trusted_ca: read /nonexistent/ca.pem", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewManager(Options{})
			defer m.Close()
			c := staticCluster("tls", lbEndpoint("127.0.0.1", 1, nil))
			c.TransportSocket = tlsSocket(t, tt.ctx)
			err := m.UpdateClusters([]*clusterv3.Cluster{c})
			if tt.wantReject != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantReject) {
					t.Fatalf("got %v, want rejection containing %q", err, tt.wantReject)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cl := m.Get("tls")
			if cl.TLS == nil {
				t.Fatal("got no TLS config")
			}
			conn, err := cl.DialContext(context.Background(), srv.Listener.Addr().String())
			if err == nil {
				conn.Close()
			}
			if tt.wantDial == "" && err != nil || tt.wantDial != "" && (err == nil || !strings.Contains(err.Error(), tt.wantDial)) {
				t.Errorf("got handshake error %v, want %q", err, tt.wantDial)
			}
		})
	}
}

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestUpstreamMutualTLSFromFiles: DestinationRule tls MUTUAL with
// clientCertificate/privateKey files; the server requires the client
// certificate.
func TestUpstreamMutualTLSFromFiles(t *testing.T) {
	serverCert, serverKey := selfSigned(t, "db.example.com")
	clientCert, clientKey := selfSigned(t, "client")
	pair, _ := tls.X509KeyPair(serverCert, serverKey)
	clientPool := x509.NewCertPool()
	clientPool.AppendCertsFromPEM(clientCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	file := func(name string, b []byte) *corev3.DataSource {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	vc := &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file("ca.pem", serverCert)}}
	for _, tt := range []struct {
		name    string
		certs   []*tlsv3.TlsCertificate
		wantErr string
	}{
		{"with the client certificate", []*tlsv3.TlsCertificate{{CertificateChain: file("cert.pem", clientCert), PrivateKey: file("key.pem", clientKey)}}, ""},
		{"without it the server refuses", nil, "certificate required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := NewManager(Options{})
			defer m.Close()
			c := staticCluster("mtls", lbEndpoint("127.0.0.1", 1, nil))
			c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "db.example.com",
				CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: tt.certs, ValidationContextType: vc}})
			if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
				t.Fatal(err)
			}
			conn, err := m.Get("mtls").DialContext(context.Background(), srv.Listener.Addr().String())
			if err == nil {
				// TLS 1.3 reports a rejected client certificate on the first read.
				conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestUpstreamTLSFromSDSRejected: DestinationRule tls.credentialName makes
// translation reference SDS secrets that sidecars are not sent; the
// cluster is NACKed with the field and the fix, never dialled plaintext.
func TestUpstreamTLSFromSDSRejected(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	c := staticCluster("mtls", lbEndpoint("127.0.0.1", 1, nil))
	c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "db.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "kubernetes://db-cred"}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "kubernetes://db-cred-cacert"}}}})
	err := m.UpdateClusters([]*clusterv3.Cluster{c})
	for _, want := range []string{
		"transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs: client certificates from SDS (DestinationRule tls.credentialName) are not supported",
		"transport_socket.typed_config.common_tls_context.validation_context_sds_secret_config: validation contexts from SDS",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a rejection containing %q", err, want)
		}
	}
	if m.Get("mtls") != nil {
		t.Error("the rejected cluster was installed")
	}
}

func TestDNSLookupFamily(t *testing.T) {
	m := NewManager(Options{Resolver: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}, nil
	}})
	defer m.Close()
	c := &clusterv3.Cluster{Name: "d", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsLookupFamily: clusterv3.Cluster_V4_ONLY, LoadAssignment: cla("d", lbEndpoint("ext.example", 443, nil))}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	hs := m.Get("d").Hosts()
	if len(hs) != 1 || hs[0].Address != "192.0.2.1:443" {
		t.Errorf("got %v, want only the IPv4 address", hs)
	}
}

// TestHealthCheckOverUpstreamTLS: as in Envoy, active health checks of a
// cluster with a TLS transport socket speak TLS to the host.
func TestHealthCheckOverUpstreamTLS(t *testing.T) {
	var checked atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && r.TLS != nil && r.Header.Get("User-Agent") == "Envoy/HC" {
			checked.Store(true)
		}
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	m := NewManager(Options{})
	defer m.Close()
	c := staticCluster("tls-hc", lbEndpoint(host, uint32(p), nil))
	c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}}}}}})
	c.HealthChecks = []*corev3.HealthCheck{{Interval: durationpb.New(20 * time.Millisecond), Timeout: durationpb.New(time.Second),
		HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: "/healthz"}}}}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	h := m.Get("tls-hc").Hosts()[0]
	deadline := time.Now().Add(5 * time.Second)
	for !(checked.Load() && h.Healthy()) {
		if time.Now().After(deadline) {
			t.Fatalf("no passing health check over TLS (checked %v, healthy %v: %s)", checked.Load(), h.Healthy(), h.HealthFlags())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
