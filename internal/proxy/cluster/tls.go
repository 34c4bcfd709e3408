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

// compileUpstreamTLS turns an UpstreamTlsContext (DestinationRule tls
// SIMPLE/MUTUAL) into a client tls.Config. Like Envoy, a context without a
// validation context does not verify the server.
func compileUpstreamTLS(ts *corev3.TransportSocket, fe *fieldErrors) *tls.Config {
	const p = "transport_socket"
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
	// SDS secrets for upstream TLS (DestinationRule tls.credentialName)
	// are not served to sidecars: refuse them rather than fail every
	// handshake later.
	const ctcPath = p + ".typed_config.common_tls_context"
	if len(ctc.GetTlsCertificateSdsSecretConfigs()) > 0 {
		fe.add(ctcPath+".tls_certificate_sds_secret_configs", "client certificates from SDS (DestinationRule tls.credentialName) are not supported for upstream TLS; use clientCertificate and privateKey files")
	}
	if ctc.GetValidationContextSdsSecretConfig() != nil || ctc.GetCombinedValidationContext() != nil {
		fe.add(ctcPath+".validation_context_sds_secret_config", "validation contexts from SDS (DestinationRule tls.credentialName) are not supported for upstream TLS; use caCertificates")
	}
	if ctc.GetTlsCertificateProviderInstance() != nil || ctc.GetTlsCertificateCertificateProviderInstance() != nil || ctc.GetValidationContextCertificateProviderInstance() != nil {
		fe.add(ctcPath, "certificate provider instances (ISTIO_MUTUAL) are not supported for upstream TLS")
	}
	vc := ctc.GetValidationContext()
	if vc == nil {
		cfg.InsecureSkipVerify = true // Envoy verifies nothing without a validation context
		return cfg
	}
	var roots *x509.CertPool // nil: the system roots
	if vc.GetTrustedCa() != nil {
		pem, err := dataSource(vc.GetTrustedCa())
		if err != nil {
			fe.add(ctcPath+".validation_context.trusted_ca", "%v", err)
			return nil
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fe.add(ctcPath+".validation_context.trusted_ca", "no PEM certificates found")
			return nil
		}
	}
	var sans []string
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || m.GetMatcher().GetExact() == "" {
			fe.add(fmt.Sprintf("%s.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[%d]", p, i), "only exact DNS names are supported")
			continue
		}
		sans = append(sans, m.GetMatcher().GetExact())
	}
	// Verify ourselves: SAN matchers replace the host name check as in
	// Envoy.
	serverName := cfg.ServerName
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("upstream presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter}
		if len(sans) == 0 {
			opts.DNSName = serverName
		}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("upstream certificate: %w", err)
		}
		if len(sans) == 0 {
			return nil
		}
		for _, san := range sans {
			if slices.Contains(leaf.DNSNames, san) {
				return nil
			}
		}
		return fmt.Errorf("upstream certificate SANs %v match none of %v", leaf.DNSNames, sans)
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
