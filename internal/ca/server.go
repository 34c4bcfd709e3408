package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Defaults for workload certificates, as Istio's.
const (
	DefaultCertTTL = 24 * time.Hour
	DefaultMaxTTL  = 24 * time.Hour
	// DefaultPort is istiod's CA port.
	DefaultPort = 15012
)

// Server implements istio.v1.auth.IstioCertificateService.
type Server struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer

	// Authority signs the certificates.
	Authority *Authority
	// Auth authenticates callers by their bearer token; nil refuses all.
	Auth Authenticator
	// TrustDomain is the identities' trust domain; empty means
	// cluster.local.
	TrustDomain string
	// DefaultTTL applies when a request asks for no validity; zero means
	// 24h. MaxTTL caps what a request may ask for; zero means 24h.
	DefaultTTL, MaxTTL time.Duration
	// Logf receives one line per certificate issued or refused; nil
	// discards.
	Logf func(format string, args ...any)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// TTL is the lifetime a request for validity seconds gets: the default
// when zero, otherwise what it asks for, at most MaxTTL.
func (s *Server) TTL(validity int64) (time.Duration, error) {
	max := s.MaxTTL
	if max <= 0 {
		max = DefaultMaxTTL
	}
	def := s.DefaultTTL
	if def <= 0 {
		def = DefaultCertTTL
	}
	switch {
	case validity < 0:
		return 0, fmt.Errorf("validity_duration %d is negative; want seconds, or 0 for the default", validity)
	case validity == 0:
		return min(def, max), nil
	case time.Duration(validity) > max/time.Second:
		return max, nil
	}
	return time.Duration(validity) * time.Second, nil
}

// CreateCertificate authenticates the caller, checks that the CSR asks for
// the caller's own identity and nothing else, and signs it.
func (s *Server) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	token, err := bearer(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if s.Auth == nil {
		return nil, status.Error(codes.Unauthenticated, "no authenticator is configured for this CA")
	}
	caller, err := s.Auth.Authenticate(ctx, token)
	if err != nil {
		s.logf("ca: refused a caller: %v", err)
		return nil, status.Errorf(codes.Unauthenticated, "authenticate caller: %v", err)
	}
	td := s.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	id := Identity{TrustDomain: td, Namespace: caller.Namespace, ServiceAccount: caller.ServiceAccount}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if err := checkSANs(csr, id); err != nil {
		s.logf("ca: refused a certificate to %s: %v", id, err)
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	ttl, err := s.TTL(req.GetValidityDuration())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	leaf, err := s.Authority.SignWorkload(csr, id, s.now(), ttl)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign: %v", err)
	}
	s.logf("ca: issued a certificate to %s for %s", id, ttl)
	return &securityv1alpha1.IstioCertificateResponse{CertChain: append([]string{leaf}, s.Authority.Chain()...)}, nil
}

// bearer takes the token from "authorization: Bearer TOKEN".
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", fmt.Errorf("no credential: send the workload's token in the metadata \"authorization: Bearer TOKEN\"")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", fmt.Errorf("authorization metadata: want \"Bearer TOKEN\"")
	}
	return strings.TrimSpace(tok), nil
}

func parseCSR(p string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("want a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return csr, nil
}

// checkSANs: the CSR must name exactly the caller's identity, as its only
// SAN.
func checkSANs(csr *x509.CertificateRequest, id Identity) error {
	want := id.String()
	var got []string
	for _, u := range csr.URIs {
		got = append(got, u.String())
	}
	for _, d := range csr.DNSNames {
		got = append(got, "DNS:"+d)
	}
	for _, ip := range csr.IPAddresses {
		got = append(got, "IP:"+ip.String())
	}
	for _, e := range csr.EmailAddresses {
		got = append(got, "email:"+e)
	}
	if len(got) == 1 && got[0] == want {
		return nil
	}
	if len(got) == 0 {
		return fmt.Errorf("csr has no SAN; it must name the caller's identity %s", want)
	}
	return fmt.Errorf("csr asks for %s but the caller is %s; a workload can only get a certificate for its own identity", strings.Join(got, ", "), want)
}

// ServingCerts hands out trellisd's own TLS certificate for the CA port,
// signed by the Authority, renewed at half its lifetime.
type ServingCerts struct {
	Authority *Authority
	DNSNames  []string
	IPs       []net.IP
	TTL       time.Duration // zero means 30 days
	Now       func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
}

// GetCertificate is for tls.Config.
func (c *ServingCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil {
		l := c.cert.Leaf
		if now.Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) / 2)) {
			return c.cert, nil
		}
	}
	cert, err := c.Authority.ServingCert(c.DNSNames, c.IPs, now, ttl)
	if err != nil {
		return nil, err
	}
	c.cert = cert
	return cert, nil
}

// GRPCServer returns a gRPC server speaking TLS with certs and serving s.
func (s *Server) GRPCServer(certs *ServingCerts, opts ...grpc.ServerOption) *grpc.Server {
	tc := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, opts...)...)
	securityv1alpha1.RegisterIstioCertificateServiceServer(g, s)
	return g
}
