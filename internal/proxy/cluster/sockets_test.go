package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// meshSecrets is a SecretSource whose certificate can arrive later.
type meshSecrets struct {
	mu    sync.Mutex
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (m *meshSecrets) Certificate(name string) *tls.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name != "default" {
		return nil
	}
	return m.cert
}

func (m *meshSecrets) Roots(name string) *x509.CertPool {
	if name != "ROOTCA" {
		return nil
	}
	return m.roots
}

// spiffeLeaf issues a leaf for a SPIFFE ID under ca.
func spiffeLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTransportSocketMatchesAutoMTLS: a cluster as trellisd emits it for
// auto mTLS gives the endpoint labelled tlsMode: istio mutual TLS with
// the SDS `default` certificate, verified against `ROOTCA` and the
// server's SPIFFE ID, and the other endpoint plaintext; while the proxy
// has no workload certificate, the tlsMode endpoint gets plaintext too.
func TestTransportSocketMatchesAutoMTLS(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mesh"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	const reviews = "spiffe://cluster.local/ns/shop/sa/reviews"
	server := spiffeLeaf(t, ca, caKey, reviews)
	tlsLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, NextProtos: []string{"istio"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsLn.Close()
	go func() {
		for {
			c, err := tlsLn.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Write([]byte("x")); c.Close() }()
		}
	}()
	plainLn, _ := net.Listen("tcp", "127.0.0.1:0")
	defer plainLn.Close()

	mtls := func(san string) *corev3.TransportSocket {
		return tlsSocket(t, &tlsv3.UpstreamTlsContext{Sni: "outbound_.80_._.reviews.shop.svc.cluster.local", CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}}}}},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"}}},
		}})
	}
	meta := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{TransportSocketMatchKey: {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}}}
	tlsAddr, plainAddr := tlsLn.Addr().(*net.TCPAddr), plainLn.Addr().(*net.TCPAddr)
	build := func(san string) (*Manager, *meshSecrets, *Cluster) {
		sec := &meshSecrets{roots: roots}
		m := NewManager(Options{Secrets: sec})
		c := staticCluster("outbound|80||reviews", lbEndpoint("127.0.0.1", uint32(tlsAddr.Port), meta), lbEndpoint("127.0.0.1", uint32(plainAddr.Port), nil))
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}, TransportSocket: mtls(san)},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"}},
		}
		if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
			t.Fatal(err)
		}
		return m, sec, m.Get(c.Name)
	}
	host := func(cl *Cluster, addr *net.TCPAddr) *Host {
		for _, h := range cl.Hosts() {
			if h.Address == addr.String() {
				return h
			}
		}
		t.Fatalf("no host %s", addr)
		return nil
	}

	m, sec, cl := build(reviews)
	defer m.Close()
	meshHost, plainHost := host(cl, tlsAddr), host(cl, plainAddr)
	if cl.HostTLS(meshHost) || cl.HostTLS(plainHost) {
		t.Fatal("without a workload certificate: got TLS, want plaintext to both hosts")
	}
	front := spiffeLeaf(t, ca, caKey, "spiffe://cluster.local/ns/shop/sa/front")
	sec.mu.Lock()
	sec.cert = &front
	sec.mu.Unlock()
	if !cl.HostTLS(meshHost) || cl.HostTLS(plainHost) {
		t.Fatal("with the workload certificate: want mTLS to the tlsMode host only")
	}
	conn, err := cl.DialHost(context.Background(), meshHost)
	if err != nil {
		t.Fatalf("mTLS dial: %v", err)
	}
	tc := conn.(*tls.Conn)
	if got := tc.ConnectionState().NegotiatedProtocol; got != "istio" {
		t.Errorf("ALPN: got %q, want istio", got)
	}
	if b := make([]byte, 1); func() error { _, err := conn.Read(b); return err }() != nil {
		t.Errorf("the server refused the client certificate")
	}
	conn.Close()
	pc, err := cl.DialHost(context.Background(), plainHost)
	if err != nil {
		t.Fatalf("plaintext dial: %v", err)
	}
	if _, isTLS := pc.(*tls.Conn); isTLS {
		t.Error("the host without tlsMode got TLS")
	}
	pc.Close()

	// A server whose identity is not the service's is refused.
	m2, sec2, cl2 := build("spiffe://cluster.local/ns/shop/sa/ratings")
	defer m2.Close()
	sec2.cert = &front
	if _, err := cl2.DialHost(context.Background(), host(cl2, tlsAddr)); err == nil || !strings.Contains(err.Error(), "match none of [spiffe://cluster.local/ns/shop/sa/ratings]") {
		t.Errorf("wrong server identity: got %v, want a SAN mismatch", err)
	}
}
