package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// /certs renders the proxy's certificate secrets as Envoy's
// admin.v3.Certificates: the SPIFFE URI SAN, serial and expiry of each.
func TestCertsEndpoint(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	notAfter := time.Now().Add(49 * time.Hour).Truncate(time.Second)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(0xbeef), URIs: []*url.URL{id},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter}, &x509.Certificate{SerialNumber: big.NewInt(1)}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	s, err := New(Options{Address: "127.0.0.1:0", Certificates: func() []CertChain {
		return []CertChain{{Secret: "default", Chain: []*x509.Certificate{leaf}}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, body := get(t, "GET", "http://"+s.Addr()+"/certs")
	var got adminv3.Certificates
	if err := protojson.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("/certs: %d %v: %s", code, err, body)
	}
	if len(got.Certificates) != 1 || len(got.Certificates[0].CertChain) != 1 {
		t.Fatalf("/certs: got %s, want one chain of one certificate", body)
	}
	d := got.Certificates[0].CertChain[0]
	if d.Path != "sds:default" || d.SerialNumber != "beef" || d.DaysUntilExpiration != 2 || !d.ExpirationTime.AsTime().Equal(notAfter) ||
		len(d.SubjectAltNames) != 1 || d.SubjectAltNames[0].GetUri() != id.String() {
		t.Errorf("/certs: got %s, want sds:default, serial beef, 2 days left, SAN %s", body, id)
	}
}
