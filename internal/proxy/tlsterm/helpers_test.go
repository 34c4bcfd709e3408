package tlsterm

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const gatewayHost = "httpsserver.zhongmingmao.io"

// pki is an in-test certificate authority.
type pki struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte
	serial atomic.Int64
}

func newCA(t testing.TB, cn string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	p.serial.Store(100)
	return p
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// issued is a leaf certificate with its PEM chain and key.
type issued struct {
	certPEM, keyPEM []byte
	serial          int64
	tls             tls.Certificate
}

type leafOpts struct {
	rsa      bool // an RSA key instead of ECDSA P-256
	dns      []string
	uris     []string
	notAfter time.Time
}

func (p *pki) issue(t testing.TB, cn string, o leafOpts) issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if o.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	serial := p.serial.Add(1)
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(12 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.dns,
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	is := issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		serial:  serial,
	}
	is.tls, err = tls.X509KeyPair(is.certPEM, is.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func certSecret(c issued) *tlsv3.Secret {
	return &tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(c.certPEM), PrivateKey: inline(c.keyPEM)}}}
}

func caSecret(caPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(caPEM)}}}
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion: corev3.ApiVersion_V3}
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads()}
}

// gatewayContext is what the translator emits for an HTTPS gateway server
// (SIMPLE, credentialName zhongmingmao-credential).
func gatewayContext() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"h2", "http/1.1"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("kubernetes://zhongmingmao-credential")},
	}}
}

// mutualContext adds MUTUAL: a required client certificate checked against
// the -cacert SDS secret.
func mutualContext() *tlsv3.DownstreamTlsContext {
	c := gatewayContext()
	c.RequireClientCertificate = wrapperspb.Bool(true)
	c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
		ValidationContextSdsSecretConfig: sds("kubernetes://zhongmingmao-credential-cacert")}
	return c
}

func mustCompile(t testing.TB, dtc *tlsv3.DownstreamTlsContext, store *Store) *Context {
	t.Helper()
	c, err := Compile("listener \"0.0.0.0_443\".filter_chains[0].transport_socket.typed_config", dtc, store)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

// serve runs a real TLS listener on 127.0.0.1:0 that terminates with c and
// answers every connection with "ok PROTO\n" (PROTO is the ALPN result).
func serve(t testing.TB, c *Context) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				tc, err := c.Handshake(ctx, conn)
				if err != nil {
					return
				}
				tc.Write([]byte("ok " + tc.ConnectionState().NegotiatedProtocol + "\n"))
				tc.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects with cfg and reads the server's line, so that a rejection
// the server sends after the client's side of a TLS 1.3 handshake
// completed (client certificate checks) surfaces as an error too.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return conn.ConnectionState(), err
	}
	if want := "ok " + conn.ConnectionState().NegotiatedProtocol + "\n"; line != want {
		return conn.ConnectionState(), errors.New("server said " + strings.TrimSpace(line))
	}
	return conn.ConnectionState(), nil
}

func clientConfig(ca *pki, alpn ...string) *tls.Config {
	return &tls.Config{ServerName: gatewayHost, RootCAs: ca.pool(), NextProtos: alpn}
}
