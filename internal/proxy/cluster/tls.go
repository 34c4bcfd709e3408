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
	if len(ctc.GetTlsCertificateSdsSecretConfigs()) > 0 || ctc.GetValidationContextSdsSecretConfig() != nil || ctc.GetCombinedValidationContext() != nil {
		fe.add(p+".typed_config.common_tls_context", "SDS secrets (credentialName) are not supported for upstream TLS yet; use files (caCertificates, clientCertificate, privateKey)")
		return nil
	}
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
	vc := ctc.GetValidationContext()
	if vc == nil {
		cfg.InsecureSkipVerify = true // Envoy verifies nothing without a validation context
		return cfg
	}
	if vc.GetTrustedCa() != nil {
		pem, err := dataSource(vc.GetTrustedCa())
		if err != nil {
			fe.add(p+".typed_config.common_tls_context.validation_context.trusted_ca", "%v", err)
			return nil
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fe.add(p+".typed_config.common_tls_context.validation_context.trusted_ca", "no PEM certificates found")
			return nil
		}
		cfg.RootCAs = pool
	}
	var sans []string
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || m.GetMatcher().GetExact() == "" {
			fe.add(fmt.Sprintf("%s.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[%d]", p, i), "only exact DNS names are supported")
			continue
		}
		sans = append(sans, m.GetMatcher().GetExact())
	}
	if len(sans) > 0 {
		// Verify the chain against the roots ourselves, then the SANs
		// (instead of the host name, as Envoy does with SAN matchers).
		roots := cfg.RootCAs
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
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("upstream certificate: %w", err)
			}
			for _, san := range sans {
				if slices.Contains(leaf.DNSNames, san) {
					return nil
				}
			}
			return fmt.Errorf("upstream certificate SANs %v match none of %v", leaf.DNSNames, sans)
		}
	}
	return cfg
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
