package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Istio's key names, in the istio-ca-secret and cacerts Secrets and in a
// plugged-in cacerts directory.
const (
	CACertFile    = "ca-cert.pem"    // the signing certificate
	CAKeyFile     = "ca-key.pem"     // its private key
	CertChainFile = "cert-chain.pem" // signing certificate up to the root (plugged-in CA)
	RootCertFile  = "root-cert.pem"  // the trust bundle: one or more roots
)

// RootTTL is the lifetime of a self-signed root, as Istio's (10 years).
const RootTTL = 10 * 365 * 24 * time.Hour

// clockSkew back-dates certificates so that a peer whose clock runs a
// little behind accepts them at once.
const clockSkew = time.Minute

// Authority signs workload certificates with a signing certificate and key
// (a self-signed root, or a plugged-in intermediate) and knows the chain
// and trust bundle that go with them. It is immutable and safe for
// concurrent use.
type Authority struct {
	cert     *x509.Certificate
	certPEM  []byte
	key      crypto.Signer
	chainPEM []byte // cert-chain.pem of a plugged-in CA; nil when self-signed
	rootsPEM []byte // trust bundle
	roots    *x509.CertPool
	plugged  bool
}

// NewSelfSigned makes a self-signed root for trustDomain, valid for
// RootTTL from now, with an RSA 2048 key (Istio's default), and returns
// the key material to persist under Istio's names.
func NewSelfSigned(trustDomain string, now time.Time) (map[string][]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate root key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign root: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return map[string][]byte{CACertFile: certPEM, CAKeyFile: keyPEM, CertChainFile: {}, RootCertFile: certPEM}, nil
}

// SelfSigned loads a self-signed CA (the istio-ca-secret keys): ca-cert.pem
// must be a CA certificate matching ca-key.pem; root-cert.pem, when
// present, is the trust bundle and must hold ca-cert.pem (more roots may
// sit beside it during a rotation).
func SelfSigned(m map[string][]byte) (*Authority, error) {
	a, err := signer(m)
	if err != nil {
		return nil, err
	}
	roots := m[RootCertFile]
	if len(bytes.TrimSpace(roots)) == 0 {
		roots = a.certPEM
	}
	if err := a.setRoots(roots); err != nil {
		return nil, err
	}
	if _, err := a.cert.Verify(x509.VerifyOptions{Roots: a.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s: %s is not in the trust bundle: %w", RootCertFile, CACertFile, err)
	}
	return a, nil
}

// Plugged loads Istio's plugged-in CA (the cacerts files): ca-cert.pem and
// ca-key.pem sign leaves, cert-chain.pem is the chain from ca-cert.pem up
// to the root, root-cert.pem the trust bundle. All four must be present
// and ca-cert.pem must chain to a root of the bundle.
func Plugged(m map[string][]byte) (*Authority, error) {
	var missing []string
	for _, k := range []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile} {
		if len(bytes.TrimSpace(m[k])) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("plugged-in CA: missing %v; cacerts needs ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem", missing)
	}
	a, err := signer(m)
	if err != nil {
		return nil, err
	}
	a.plugged = true
	if err := a.setRoots(m[RootCertFile]); err != nil {
		return nil, err
	}
	chain, err := parseCerts(m[CertChainFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CertChainFile, err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if _, err := a.cert.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("plugged-in CA: %s does not chain to %s through %s: %w", CACertFile, RootCertFile, CertChainFile, err)
	}
	a.chainPEM = bytes.TrimSpace(m[CertChainFile])
	return a, nil
}

func signer(m map[string][]byte) (*Authority, error) {
	certs, err := parseCerts(m[CACertFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q is not a CA certificate (needs basicConstraints CA:TRUE and keyUsage certSign)", CACertFile, cert.Subject)
	}
	key, err := parseKey(m[CAKeyFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the private key of %s", CAKeyFile, CACertFile)
	}
	return &Authority{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), key: key}, nil
}

func (a *Authority) setRoots(p []byte) error {
	roots, err := parseCerts(p)
	if err != nil {
		return fmt.Errorf("%s: %w", RootCertFile, err)
	}
	a.roots = x509.NewCertPool()
	var b bytes.Buffer
	for _, r := range roots {
		a.roots.AddCert(r)
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	a.rootsPEM = b.Bytes()
	return nil
}

// Plugged reports whether the signing certificate came from cacerts.
func (a *Authority) Plugged() bool { return a.plugged }

// Certificate is the signing certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// RootsPEM is the trust bundle: every root workloads must trust, PEM.
func (a *Authority) RootsPEM() []byte { return a.rootsPEM }

// Roots is the trust bundle as a pool.
func (a *Authority) Roots() *x509.CertPool { return a.roots }

// Chain is what CreateCertificate returns after the leaf: the plugged-in
// cert-chain.pem (when there is one) and the trust bundle, last.
func (a *Authority) Chain() []string {
	var out []string
	if len(a.chainPEM) > 0 {
		out = append(out, string(a.chainPEM)+"\n")
	}
	return append(out, string(a.rootsPEM))
}

// signLeaf signs a certificate for pub with the given SANs, valid from now
// for ttl (cut at the signing certificate's own expiry).
func (a *Authority) signLeaf(pub crypto.PublicKey, tmpl *x509.Certificate, now time.Time, ttl time.Duration) ([]byte, error) {
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(a.cert.NotAfter) {
		tmpl.NotAfter = a.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return der, nil
}

// SignWorkload signs a leaf for id (its only SAN, a URI) over the CSR's
// public key. The CSR must already be checked.
func (a *Authority) SignWorkload(csr *x509.CertificateRequest, id Identity, now time.Time, ttl time.Duration) (string, error) {
	der, err := a.signLeaf(csr.PublicKey, &x509.Certificate{URIs: []*url.URL{id.URL()}}, now, ttl)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// ServingCert makes a TLS certificate for trellisd itself (ECDSA P-256),
// valid from now for ttl, with the given DNS and IP SANs, its chain
// attached.
func (a *Authority) ServingCert(dns []string, ips []net.IP, now time.Time, ttl time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	}
	der, err := a.signLeaf(key.Public(), &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips}, now, ttl)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	if a.plugged {
		chain = append(chain, a.cert.Raw)
		if cs, err := parseCerts(a.chainPEM); err == nil {
			for _, c := range cs {
				if !bytes.Equal(c.Raw, a.cert.Raw) {
					chain = append(chain, c.Raw)
				}
			}
		}
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

// parseCerts reads every CERTIFICATE block of p; there must be one.
func parseCerts(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

func parseKey(p []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			return nil, errors.New("no PEM private key block (RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)")
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		}
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}
