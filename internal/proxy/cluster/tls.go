package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

const tlsTransportSocket = "envoy.transport_sockets.tls"

// noSecrets is the SecretSource of a proxy that holds none.
type noSecrets struct{}

func (noSecrets) Certificate(string) *tls.Certificate { return nil }
func (noSecrets) Roots(string) *x509.CertPool         { return nil }

// SecretSource answers SDS secrets by name at handshake time (the proxy's
// secret store: xDS secrets and the workload certificate `default` and
// trust bundle `ROOTCA` the proxy obtains itself). Implementations are
// safe for concurrent use; nil results mean the secret has not arrived.
type SecretSource interface {
	Certificate(name string) *tls.Certificate
	Roots(name string) *x509.CertPool
}

// The SDS secrets a proxy serves itself (its workload certificate and the
// mesh trust bundle, from the CA). Upstream TLS may name only these:
// trellisd sends sidecars no other secrets (DestinationRule
// tls.credentialName), so any other name is refused at CDS rather than
// failing every handshake later.
const (
	ownCertSecret = "default"
	ownRootSecret = "ROOTCA"
)

// sanMatcher is one subject alt name check: an exact DNS or URI SAN, or
// (from the untyped match_subject_alt_names) either.
type sanMatcher struct {
	dns, uri bool
	exact    string
}

func (m sanMatcher) matches(leaf *x509.Certificate) bool {
	if m.dns && slices.Contains(leaf.DNSNames, m.exact) {
		return true
	}
	if m.uri {
		for _, u := range leaf.URIs {
			if u.String() == m.exact {
				return true
			}
		}
	}
	return false
}

func peerSANs(leaf *x509.Certificate) []string {
	out := append([]string(nil), leaf.DNSNames...)
	for _, u := range leaf.URIs {
		out = append(out, u.String())
	}
	return out
}

// compileUpstreamTLS turns an UpstreamTlsContext (DestinationRule tls
// SIMPLE/MUTUAL/ISTIO_MUTUAL, auto mTLS) into a client tls.Config. Like
// Envoy, a context without a validation context does not verify the
// server. Certificates and trusted CAs named over SDS are read from
// secrets at each handshake, so a renewed workload certificate is used by
// the next connection. p is the transport socket's field path.
func compileUpstreamTLS(ts *corev3.TransportSocket, p string, secrets SecretSource, fe *fieldErrors) *tls.Config {
	var uc tlsv3.UpstreamTlsContext
	if ts.GetTypedConfig() == nil || ts.GetTypedConfig().UnmarshalTo(&uc) != nil {
		fe.add(p+".typed_config", "must be an envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")
		return nil
	}
	cfg := &tls.Config{ServerName: uc.GetSni(), MinVersion: tls.VersionTLS12}
	ctc := uc.GetCommonTlsContext()
	cfg.NextProtos = ctc.GetAlpnProtocols()
	switch v := ctc.GetTlsParams().GetTlsMinimumProtocolVersion(); v {
	case tlsv3.TlsParameters_TLSv1_3:
		cfg.MinVersion = tls.VersionTLS13
	}
	if v := ctc.GetTlsParams().GetTlsMaximumProtocolVersion(); v == tlsv3.TlsParameters_TLSv1_2 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	for i, c := range ctc.GetTlsCertificates() {
		chain, err1 := dataSource(c.GetCertificateChain())
		key, err2 := dataSource(c.GetPrivateKey())
		if err := errors.Join(err1, err2); err != nil {
			fe.add(fmt.Sprintf("%s.typed_config.common_tls_context.tls_certificates[%d]", p, i), "%v", err)
			continue
		}
		pair, err := tls.X509KeyPair(chain, key)
		if err != nil {
			fe.add(fmt.Sprintf("%s.typed_config.common_tls_context.tls_certificates[%d]", p, i), "invalid certificate or key: %v", err)
			continue
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	ctcPath := p + ".typed_config.common_tls_context"
	if sds := ctc.GetTlsCertificateSdsSecretConfigs(); len(sds) > 0 {
		switch {
		case sds[0].GetName() != ownCertSecret:
			fe.add(ctcPath+".tls_certificate_sds_secret_configs", "client certificates from SDS (DestinationRule tls.credentialName) are not supported for upstream TLS; use clientCertificate and privateKey files (only the workload certificate %q is served)", ownCertSecret)
		case len(sds) > 1 || len(cfg.Certificates) > 0:
			fe.add(ctcPath+".tls_certificate_sds_secret_configs", "only one client certificate is supported")
		case sds[0].GetName() == "":
			fe.add(ctcPath+".tls_certificate_sds_secret_configs[0].name", "is required")
		default:
			name := sds[0].GetName()
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c := secrets.Certificate(name); c != nil {
					return c, nil
				}
				return &tls.Certificate{}, nil // none yet: the server decides
			}
		}
	}
	if ctc.GetTlsCertificateProviderInstance() != nil || ctc.GetTlsCertificateCertificateProviderInstance() != nil || ctc.GetValidationContextCertificateProviderInstance() != nil {
		fe.add(ctcPath, "certificate provider instances are not supported for upstream TLS; use SDS secrets")
	}
	vc, rootsSecret := ctc.GetValidationContext(), ""
	vcPath := ctcPath + ".validation_context"
	switch {
	case ctc.GetValidationContextSdsSecretConfig() != nil:
		rootsSecret = ctc.GetValidationContextSdsSecretConfig().GetName()
		vc = nil
	case ctc.GetCombinedValidationContext() != nil:
		cvc := ctc.GetCombinedValidationContext()
		rootsSecret = cvc.GetValidationContextSdsSecretConfig().GetName()
		vc = cvc.GetDefaultValidationContext()
		vcPath = ctcPath + ".combined_validation_context.default_validation_context"
		if rootsSecret == "" {
			fe.add(ctcPath+".combined_validation_context.validation_context_sds_secret_config.name", "is required")
			return nil
		}
	}
	if rootsSecret != "" && rootsSecret != ownRootSecret {
		fe.add(ctcPath+".validation_context_sds_secret_config", "validation contexts from SDS (DestinationRule tls.credentialName) are not supported for upstream TLS; use caCertificates (only the mesh trust bundle %q is served)", ownRootSecret)
		return nil
	}
	if vc == nil && rootsSecret == "" {
		cfg.InsecureSkipVerify = true // Envoy verifies nothing without a validation context
		return cfg
	}
	var roots *x509.CertPool // nil: the system roots
	if vc.GetTrustedCa() != nil {
		if rootsSecret != "" {
			fe.add(vcPath+".trusted_ca", "the trusted CA comes from validation_context_sds_secret_config; remove one")
			return nil
		}
		pem, err := dataSource(vc.GetTrustedCa())
		if err != nil {
			fe.add(vcPath+".trusted_ca", "%v", err)
			return nil
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fe.add(vcPath+".trusted_ca", "no PEM certificates found")
			return nil
		}
	}
	var sans []sanMatcher
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		exact := m.GetMatcher().GetExact()
		switch {
		case exact == "":
			fe.add(fmt.Sprintf("%s.match_typed_subject_alt_names[%d].matcher", vcPath, i), "only exact matches are supported")
		case m.GetSanType() == tlsv3.SubjectAltNameMatcher_DNS:
			sans = append(sans, sanMatcher{dns: true, exact: exact})
		case m.GetSanType() == tlsv3.SubjectAltNameMatcher_URI:
			sans = append(sans, sanMatcher{uri: true, exact: exact})
		default:
			fe.add(fmt.Sprintf("%s.match_typed_subject_alt_names[%d].san_type", vcPath, i), "only DNS and URI are supported")
		}
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		if m.GetExact() == "" {
			fe.add(fmt.Sprintf("%s.match_subject_alt_names[%d]", vcPath, i), "only exact matches are supported")
			continue
		}
		sans = append(sans, sanMatcher{dns: true, uri: true, exact: m.GetExact()})
	}
	// Verify ourselves: SAN matchers replace the host name check as in
	// Envoy.
	serverName := cfg.ServerName
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("upstream presented no certificate")
		}
		pool := roots
		if rootsSecret != "" {
			if pool = secrets.Roots(rootsSecret); pool == nil {
				return fmt.Errorf("SDS secret %q (trusted CA) has not arrived", rootsSecret)
			}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		opts := x509.VerifyOptions{Roots: pool, Intermediates: inter}
		if len(sans) == 0 && rootsSecret == "" {
			opts.DNSName = serverName
		}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("upstream certificate: %w", err)
		}
		if len(sans) == 0 {
			return nil
		}
		for _, m := range sans {
			if m.matches(leaf) {
				return nil
			}
		}
		want := make([]string, len(sans))
		for i, m := range sans {
			want[i] = m.exact
		}
		return fmt.Errorf("upstream certificate SANs %v match none of %v", peerSANs(leaf), want)
	}
	return cfg
}

// parsedSecret is an SDS secret ready for handshakes.
type parsedSecret struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

// parseSecret validates an SDS secret: a tls_certificate (PEM chain and
// key, inline or files) or a validation_context with trusted_ca.
func parseSecret(sec *tlsv3.Secret) (*parsedSecret, error) {
	ps := &parsedSecret{}
	switch {
	case sec.GetTlsCertificate() != nil:
		c := sec.GetTlsCertificate()
		chain, err1 := dataSource(c.GetCertificateChain())
		key, err2 := dataSource(c.GetPrivateKey())
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("tls_certificate: %w", err)
		}
		pair, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("tls_certificate: invalid certificate or key: %w", err)
		}
		ps.cert = &pair
	case sec.GetValidationContext() != nil:
		pem, err := dataSource(sec.GetValidationContext().GetTrustedCa())
		if err != nil {
			return nil, fmt.Errorf("validation_context.trusted_ca: %w", err)
		}
		ps.roots = x509.NewCertPool()
		if !ps.roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("validation_context.trusted_ca: no PEM certificates found")
		}
	default:
		return nil, errors.New("only tls_certificate and validation_context secrets are supported")
	}
	return ps, nil
}

func dataSource(ds *corev3.DataSource) ([]byte, error) {
	switch {
	case ds.GetFilename() != "":
		b, err := os.ReadFile(ds.GetFilename())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", ds.GetFilename(), err)
		}
		return b, nil
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString()), nil
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes(), nil
	}
	return nil, errors.New("data source must set filename, inline_string or inline_bytes")
}

// ParseSecret validates an SDS secret and returns its certificate (for a
// tls_certificate secret) or its trusted roots (for a validation_context
// secret). The listener side can use it for gateway certificates too.
func ParseSecret(sec *tlsv3.Secret) (cert *tls.Certificate, roots *x509.CertPool, err error) {
	ps, err := parseSecret(sec)
	if err != nil {
		return nil, nil, err
	}
	return ps.cert, ps.roots, nil
}
