package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/tlsterm"
	"github.com/trellis-mesh/trellis/internal/proxy/xdsclient"
)

// TestSecretsDecodedOnce: an SDS update is decoded and parsed once, into
// the secret store TLS termination reads. The proxy's Apply costs what the
// store's own ApplyAny costs (a second decode and parse, as when the
// cluster manager kept a copy, doubles it).
func TestSecretsDecodedOnce(t *testing.T) {
	r := startProxy(t, nil, nil, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "gw.example.com"},
		DNSNames: []string{"gw.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	cert, _ := anypb.New(&tlsv3.Secret{Name: "kubernetes://gw", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}})
	ca, _ := anypb.New(&tlsv3.Secret{Name: "kubernetes://gw-cacert", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}}}}})
	res := map[string]*anypb.Any{"kubernetes://gw": cert, "kubernetes://gw-cacert": ca}

	if err := r.p.Apply(xdsclient.SecretType, res); err != nil {
		t.Fatal(err)
	}
	if r.p.Secrets.Certificate("kubernetes://gw") == nil || r.p.Secrets.Roots("kubernetes://gw-cacert") == nil {
		t.Fatal("the proxy's secret store lacks the secrets after the SDS update")
	}
	alone := testing.AllocsPerRun(20, func() {
		if err := tlsterm.NewStore().ApplyAny(res); err != nil {
			t.Fatal(err)
		}
	})
	via := testing.AllocsPerRun(20, func() {
		if err := r.p.Apply(xdsclient.SecretType, res); err != nil {
			t.Fatal(err)
		}
	})
	if via > alone*1.25 {
		t.Errorf("Apply(SDS): got %.0f allocations, want about the %.0f of one decode and parse", via, alone)
	}
	t.Logf("one decode and parse: %.0f allocations; Apply: %.0f", alone, via)
}
