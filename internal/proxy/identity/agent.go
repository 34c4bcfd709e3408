package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// The SDS secret names Istio's TLS contexts use for the workload's own
// certificate and for the mesh's trust bundle.
const (
	CertSecret = "default"
	RootSecret = "ROOTCA"
)

// DefaultTrustDomain is the trust domain when none is configured, as in
// Istio.
const DefaultTrustDomain = "cluster.local"

// Sink receives the secrets (the proxy's tlsterm.Store): each call
// replaces the previous set.
type Sink interface {
	SetLocal(secrets map[string]*tlsv3.Secret) error
}

// Options configure an Agent. Address, RootCertFile, Token, Namespace and
// Sink are required.
type Options struct {
	// Address is the CA's host:port (CA_ADDR), e.g. istiod.istio-system.svc:15012.
	Address string
	// ServerName is the name verified in the CA's certificate; empty
	// means Address's host (an IP or the Service name).
	ServerName string
	// RootCertFile holds the trust bundle (PEM) that verifies the CA's
	// serving certificate; it is read before each request, so a rotated
	// bundle is picked up.
	RootCertFile string
	// Token returns the bearer credential, called before each request
	// (Kubernetes: re-read the projected token; local mode: the token
	// read once from the inherited descriptor).
	Token func() (string, error)
	// TrustDomain, Namespace and ServiceAccount make the SPIFFE ID put in
	// the CSR. TrustDomain empty means cluster.local, ServiceAccount
	// empty means "default".
	TrustDomain, Namespace, ServiceAccount string
	// ClusterID is the proxy's cluster (CLUSTER_ID), sent as the ClusterID
	// metadata so that a multi-cluster CA reviews the token with that
	// cluster's API server; empty sends none.
	ClusterID string
	// TTL is the certificate lifetime requested; zero asks for the CA's
	// default (24 h).
	TTL time.Duration
	// Sink receives `default` and `ROOTCA`.
	Sink Sink
	// MinBackoff and MaxBackoff bound the wait between failed requests
	// (defaults 1 s and 30 s); the wait doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// Logf receives operational messages; nil discards them.
	Logf func(format string, args ...any)
}

// Agent obtains and renews the workload certificate.
type Agent struct {
	o  Options
	id *url.URL

	mu      sync.Mutex
	current *x509.Certificate
	issued  int
	changed chan struct{} // closed and replaced at each new certificate
}

// New checks o and returns an Agent; Run starts it.
func New(o Options) (*Agent, error) {
	var errs []error
	if o.Address == "" {
		errs = append(errs, errors.New("CA address: is required (CA_ADDR)"))
	} else if _, _, err := net.SplitHostPort(o.Address); err != nil {
		errs = append(errs, fmt.Errorf("CA address %q: want host:port: %w", o.Address, err))
	}
	if o.RootCertFile == "" {
		errs = append(errs, errors.New("CA root certificate file: is required to verify the CA (TRELLIS_CA_ROOT_CERT)"))
	}
	if o.Token == nil {
		errs = append(errs, errors.New("CA credential: is required (TRELLIS_CA_TOKEN_FD or a token file)"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace: is required for the workload identity (POD_NAMESPACE)"))
	}
	if o.Sink == nil {
		errs = append(errs, errors.New("sink: is required"))
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("certificate lifetime %s: must not be negative", o.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = "default"
	}
	if o.ServerName == "" {
		o.ServerName, _, _ = net.SplitHostPort(o.Address)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	id := &url.URL{Scheme: "spiffe", Host: o.TrustDomain, Path: "/ns/" + o.Namespace + "/sa/" + o.ServiceAccount}
	return &Agent{o: o, id: id, changed: make(chan struct{})}, nil
}

// SPIFFEID is the identity the agent asks for.
func (a *Agent) SPIFFEID() string { return a.id.String() }

// Current returns the leaf certificate being served (nil before the
// first one) and how many certificates the agent has obtained so far.
func (a *Agent) Current() (*x509.Certificate, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current, a.issued
}

// Changed returns a channel closed when the next certificate is served.
func (a *Agent) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

func (a *Agent) logf(format string, args ...any) {
	if a.o.Logf != nil {
		a.o.Logf(format, args...)
	}
}

// Run obtains a certificate, serves it, and renews it until ctx ends. A
// failed request is retried with back-off; the certificate already served
// stays in place meanwhile.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.o.MinBackoff
	for {
		wait := backoff
		leaf, err := a.renew(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			cur, _ := a.Current()
			if cur != nil {
				a.logf("identity: renewing %s failed, retrying in %s; serving the current certificate (expires %s): %v", a.id, backoff, cur.NotAfter.Format(time.RFC3339), err)
			} else {
				a.logf("identity: no certificate for %s yet, retrying in %s: %v", a.id, backoff, err)
			}
			backoff = min(2*backoff, a.o.MaxBackoff)
		default:
			backoff = a.o.MinBackoff
			wait = renewAfter(time.Now(), leaf)
			a.logf("identity: serving %s (serial %x, expires %s), renewing in %s", a.id, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339), wait.Round(time.Second))
		}
		t := time.NewTimer(jitter(wait, 10))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// renewAfter is half the leaf's remaining life, as pilot-agent's default
// grace ratio of 0.5 (measured from now: the CA backdates NotBefore for
// clock skew, which is not life the proxy had).
func renewAfter(now time.Time, leaf *x509.Certificate) time.Duration {
	return max(leaf.NotAfter.Sub(now)/2, 0)
}

// jitter spreads d by up to ±1/div, so proxies started together do not
// renew together.
func jitter(d time.Duration, div int64) time.Duration {
	span := int64(d) / div
	if span <= 0 {
		return d
	}
	n, err := rand.Int(rand.Reader, big.NewInt(2*span+1))
	if err != nil {
		return d
	}
	return d + time.Duration(n.Int64()-span)
}

// renew makes a new key and CSR, has it signed and serves the result.
func (a *Agent) renew(ctx context.Context) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{a.id}}, key)
	if err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	chain, err := a.request(ctx, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})))
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	leaf, secrets, err := a.secrets(chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, err
	}
	if err := a.o.Sink.SetLocal(secrets); err != nil {
		return nil, fmt.Errorf("install certificate: %w", err)
	}
	a.mu.Lock()
	a.current = leaf
	a.issued++
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	return leaf, nil
}

// request calls CreateCertificate, verifying the CA against the trust
// bundle and authenticating with the bearer credential.
func (a *Agent) request(ctx context.Context, csr string) ([]string, error) {
	rootPEM, err := os.ReadFile(a.o.RootCertFile)
	if err != nil {
		return nil, fmt.Errorf("CA trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, fmt.Errorf("CA trust bundle %s: no PEM certificates found", a.o.RootCertFile)
	}
	token, err := a.o.Token()
	if err != nil {
		return nil, fmt.Errorf("CA credential: %w", err)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("CA credential: is empty")
	}
	conn, err := grpc.NewClient(a.o.Address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: a.o.ServerName, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", a.o.Address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	if a.o.ClusterID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "ClusterID", a.o.ClusterID)
	}
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: csr, ValidityDuration: int64(a.o.TTL / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("CA %s: create certificate: %w", a.o.Address, err)
	}
	return resp.GetCertChain(), nil
}

// secrets checks the CA's answer (leaf for our key and identity, chaining
// to the returned bundle) and builds `default` and `ROOTCA` from it:
// cert_chain[0..n-2] is the chain, cert_chain[n-1] the trust bundle.
func (a *Agent) secrets(chain []string, keyPEM []byte) (*x509.Certificate, map[string]*tlsv3.Secret, error) {
	if len(chain) < 2 {
		return nil, nil, fmt.Errorf("CA answered %d certificates; want the leaf and the trust bundle", len(chain))
	}
	certPEM := []byte(strings.Join(chain[:len(chain)-1], "\n"))
	rootsPEM := []byte(chain[len(chain)-1])
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA answer: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("CA answer: leaf: %w", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != a.id.String() {
		return nil, nil, fmt.Errorf("CA answer: leaf is for %v, want %s", leaf.URIs, a.id)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootsPEM) {
		return nil, nil, errors.New("CA answer: trust bundle has no PEM certificates")
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, nil, fmt.Errorf("CA answer: leaf does not chain to the trust bundle: %w", err)
	}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	return leaf, map[string]*tlsv3.Secret{
		CertSecret: {Name: CertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM),
		}}},
		RootSecret: {Name: RootSecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(rootsPEM),
		}}},
	}, nil
}
