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
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
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
			m := NewManager(Options{UpstreamTLS: true})
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
			raw, err := cl.Dialer().DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn := tls.Client(raw, cl.TLS.Clone())
			err = conn.Handshake()
			conn.Close()
			if tt.wantDial == "" && err != nil || tt.wantDial != "" && (err == nil || !strings.Contains(err.Error(), tt.wantDial)) {
				t.Errorf("got handshake error %v, want %q", err, tt.wantDial)
			}
		})
	}
	// Without data-path support the cluster is rejected, never plaintext.
	m := NewManager(Options{})
	defer m.Close()
	c := staticCluster("tls", lbEndpoint("127.0.0.1", 1, nil))
	c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{})
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err == nil || !strings.Contains(err.Error(), "upstream TLS is not supported by this proxy's data path") {
		t.Errorf("got %v, want a rejection", err)
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

func secretAny(t *testing.T, s *tlsv3.Secret) *anypb.Any {
	t.Helper()
	a, err := anypb.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestUpstreamTLSFromSDS: a DestinationRule with credentialName — the CA
// and the client certificate come over SDS, after the cluster.
func TestUpstreamTLSFromSDS(t *testing.T) {
	serverCert, serverKey := selfSigned(t, "db.example.com")
	clientCert, clientKey := selfSigned(t, "client")
	pair, _ := tls.X509KeyPair(serverCert, serverKey)
	clientPool := x509.NewCertPool()
	clientPool.AppendCertsFromPEM(clientCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	srv.StartTLS()
	defer srv.Close()

	m := NewManager(Options{UpstreamTLS: true})
	defer m.Close()
	c := staticCluster("mtls", lbEndpoint("127.0.0.1", 1, nil))
	c.TransportSocket = tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "db.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "kubernetes://db-cred"}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "kubernetes://db-cred-cacert"}}}})
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	handshake := func() error {
		cl := m.Get("mtls")
		raw, err := cl.Dialer().DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, cl.TLS.Clone())
		defer conn.Close()
		if err := conn.Handshake(); err != nil {
			return err
		}
		// TLS 1.3 reports a rejected client certificate on the first read.
		conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	if err := handshake(); err == nil || !strings.Contains(err.Error(), "not received yet") {
		t.Fatalf("before SDS: got %v, want a missing secret error", err)
	}
	if err := m.ApplySecrets(map[string]*anypb.Any{
		"kubernetes://db-cred": secretAny(t, &tlsv3.Secret{Name: "kubernetes://db-cred", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: clientCert}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: clientKey}}}}}),
		"kubernetes://db-cred-cacert": secretAny(t, &tlsv3.Secret{Name: "kubernetes://db-cred-cacert", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: serverCert}}}}}),
	}); err != nil {
		t.Fatal(err)
	}
	if err := handshake(); err != nil {
		t.Fatalf("after SDS: got %v, want a mutual TLS connection", err)
	}
	bad := map[string]*anypb.Any{"x": secretAny(t, &tlsv3.Secret{Name: "x", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "nope"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "nope"}}}}})}
	if err := m.ApplySecrets(bad); err == nil || !strings.Contains(err.Error(), `secret "x": tls_certificate: invalid certificate or key`) {
		t.Errorf("got %v, want the bad secret rejected", err)
	}
	if err := handshake(); err != nil {
		t.Errorf("after a rejected SDS update: got %v, want the last good secrets kept", err)
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
