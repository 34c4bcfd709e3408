package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// testCA is a CA certificate and key made by a test (a root, or an
// intermediate under one), as an operator would make them for cacerts.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t *testing.T, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	signer, signKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *testCA) keyPEM(t *testing.T) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

// writeCACerts writes Istio's cacerts files for an intermediate under root,
// with the given trust bundle.
func writeCACerts(t *testing.T, dir string, inter, root *testCA, bundle []byte) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	files := map[string][]byte{
		CACertFile: inter.pem, CAKeyFile: inter.keyPEM(t),
		CertChainFile: append(append([]byte{}, inter.pem...), root.pem...), RootCertFile: bundle,
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// csrFor makes a key and a CSR naming the given SANs, as a proxy does.
func csrFor(t testing.TB, uris ...string) (string, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var us []*url.URL
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: us}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key
}

// serve runs s over TLS on 127.0.0.1:0 with a serving certificate from its
// Authority and returns a client that trusts the Authority's roots.
func serve(t *testing.T, s *Server) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := s.GRPCServer(&ServingCerts{Authority: s.Authority, DNSNames: []string{"trellisd", "istiod.trellis-system.svc"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	go g.Serve(l)
	t.Cleanup(g.Stop)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Authority.RootsPEM())
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.trellis-system.svc"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(cc)
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// verifyChain parses a CreateCertificate answer and verifies the leaf
// against the last element (the trust bundle) through the ones between.
func verifyChain(t *testing.T, chain []string) *x509.Certificate {
	t.Helper()
	if len(chain) < 2 {
		t.Fatalf("got %d chain elements, want leaf, [chain], roots", len(chain))
	}
	leaf, err := parseCerts([]byte(chain[0]))
	if err != nil {
		t.Fatalf("leaf: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(chain[len(chain)-1])) {
		t.Fatal("last element holds no root certificate")
	}
	inter := x509.NewCertPool()
	for _, p := range chain[1 : len(chain)-1] {
		inter.AppendCertsFromPEM([]byte(p))
	}
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not chain to the returned roots: %v", err)
	}
	return leaf[0]
}
