package tlsterm

import (
	"crypto/tls"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
)

// Transport socket names Compile recognises.
const (
	TLSTransportSocket       = "envoy.transport_sockets.tls"
	RawBufferTransportSocket = "envoy.transport_sockets.raw_buffer"
)

// CompileTransportSocket compiles a filter chain's transport_socket. It
// returns nil and no error for a raw_buffer socket (plain text). path names
// the transport_socket field, e.g. `listener "0.0.0.0_443".filter_chains[0].transport_socket`.
func CompileTransportSocket(path string, ts *corev3.TransportSocket, store *Store) (*Context, error) {
	if ts == nil || ts.GetName() == RawBufferTransportSocket {
		return nil, nil
	}
	if ts.GetName() != TLSTransportSocket && ts.GetName() != "tls" {
		return nil, fmt.Errorf("%s.name: got %q, want %q or %q", path, ts.GetName(), TLSTransportSocket, RawBufferTransportSocket)
	}
	var dtc tlsv3.DownstreamTlsContext
	if ts.GetTypedConfig() == nil || ts.GetTypedConfig().UnmarshalTo(&dtc) != nil {
		return nil, fmt.Errorf("%s.typed_config: must be an envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", path)
	}
	return Compile(path+".typed_config", &dtc, store)
}

// Compile validates a DownstreamTlsContext and compiles it into a Context
// whose certificates and trusted CAs from SDS are looked up in store at
// handshake time. path prefixes every error (the NACK names the field);
// unsupported fields are errors, never ignored.
func Compile(path string, dtc *tlsv3.DownstreamTlsContext, store *Store) (*Context, error) {
	if dtc == nil {
		return nil, fmt.Errorf("%s: a DownstreamTlsContext is required", path)
	}
	if store == nil {
		store = NewStore()
	}
	if err := checkFields(path, dtc, downstreamFields); err != nil {
		return nil, err
	}
	cp := path + ".common_tls_context"
	ctc := dtc.GetCommonTlsContext()
	if ctc == nil {
		return nil, fmt.Errorf("%s: is required (it holds the server certificate)", cp)
	}
	if err := checkFields(cp, ctc, commonFields); err != nil {
		return nil, err
	}
	c := &Context{path: path, store: store, requireSNI: dtc.GetRequireSni().GetValue()}
	c.st.Store(newStats())
	tmpl := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: dtc.GetDisableStatelessSessionResumption(),
		GetCertificate:         c.getCertificate,
	}
	if err := compileParams(cp+".tls_params", ctc.GetTlsParams(), tmpl); err != nil {
		return nil, err
	}
	for i, tc := range ctc.GetTlsCertificates() {
		p := fmt.Sprintf("%s.tls_certificates[%d]", cp, i)
		if err := checkFields(p, tc, tlsCertificateFields); err != nil {
			return nil, err
		}
		if tc.GetCertificateChain() == nil || tc.GetPrivateKey() == nil {
			return nil, fmt.Errorf("%s: certificate_chain and private_key are both required", p)
		}
		cert, _, err := cluster.ParseSecret(&tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: tc}})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, trimPrefix(err, "tls_certificate: "))
		}
		c.inline = append(c.inline, cert)
	}
	for i, sc := range ctc.GetTlsCertificateSdsSecretConfigs() {
		name, err := sdsName(fmt.Sprintf("%s.tls_certificate_sds_secret_configs[%d]", cp, i), sc)
		if err != nil {
			return nil, err
		}
		c.certSecrets = append(c.certSecrets, name)
	}
	if len(c.inline)+len(c.certSecrets) == 0 {
		return nil, fmt.Errorf("%s: a server certificate is required: set tls_certificates or tls_certificate_sds_secret_configs", cp)
	}
	validation, err := c.compileValidation(cp, ctc)
	if err != nil {
		return nil, err
	}
	c.requireClient = dtc.GetRequireClientCertificate().GetValue()
	switch {
	case c.requireClient && !validation:
		return nil, fmt.Errorf("%s.require_client_certificate: needs a validation context (validation_context, validation_context_sds_secret_config or combined_validation_context) to verify client certificates against", path)
	case validation:
		// Request (not require) at the TLS layer and enforce in
		// verifyClient, so that a missing certificate is counted.
		tmpl.ClientAuth = tls.RequestClientCert
		tmpl.VerifyConnection = c.verifyClient
	}
	for i, p := range ctc.GetAlpnProtocols() {
		if p == "" || len(p) > 255 {
			return nil, fmt.Errorf("%s.alpn_protocols[%d]: got %q, want a protocol name of 1 to 255 bytes", cp, i, p)
		}
	}
	c.plain = tmpl
	if alpn := ctc.GetAlpnProtocols(); len(alpn) > 0 {
		c.alpn = tmpl.Clone()
		c.alpn.NextProtos = append([]string(nil), alpn...)
	}
	c.base = &tls.Config{
		MinVersion:             tmpl.MinVersion,
		MaxVersion:             tmpl.MaxVersion,
		SessionTicketsDisabled: tmpl.SessionTicketsDisabled,
		GetConfigForClient:     c.configForClient,
	}
	return c, nil
}

// compileValidation fills the client verification of c and reports
// whether the context has any.
func (c *Context) compileValidation(cp string, ctc *tlsv3.CommonTlsContext) (bool, error) {
	var vc *tlsv3.CertificateValidationContext
	vp := cp + ".validation_context"
	switch v := ctc.GetValidationContextType().(type) {
	case nil:
		return false, nil
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		name, err := sdsName(cp+".validation_context_sds_secret_config", v.ValidationContextSdsSecretConfig)
		if err != nil {
			return false, err
		}
		c.caSecret = name
		return true, nil
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		p := cp + ".combined_validation_context"
		if err := checkFields(p, v.CombinedValidationContext, combinedFields); err != nil {
			return false, err
		}
		name, err := sdsName(p+".validation_context_sds_secret_config", v.CombinedValidationContext.GetValidationContextSdsSecretConfig())
		if err != nil {
			return false, err
		}
		c.caSecret = name
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
		vp = p + ".default_validation_context"
		if vc == nil {
			return true, nil
		}
	}
	pc, err := compilePeerChecks(vp, vc)
	if err != nil {
		return false, err
	}
	c.static = pc
	c.hasStatic = true
	if vc.GetTrustedCa() != nil {
		if c.caSecret != "" {
			return false, fmt.Errorf("%s.trusted_ca: the trusted CA comes from validation_context_sds_secret_config; remove one", vp)
		}
		_, roots, err := cluster.ParseSecret(&tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: vc.GetTrustedCa()}}})
		if err != nil {
			return false, fmt.Errorf("%s.trusted_ca: %w", vp, trimPrefix(err, "validation_context.trusted_ca: "))
		}
		c.staticRoots = roots
	}
	return true, nil
}

// sdsName validates an SDS reference: a name, and a config source that is
// ADS (or none, for secrets in the bootstrap).
func sdsName(path string, sc *tlsv3.SdsSecretConfig) (string, error) {
	if sc == nil {
		return "", fmt.Errorf("%s: is required", path)
	}
	if err := checkFields(path, sc, sdsConfigFields); err != nil {
		return "", err
	}
	if sc.GetName() == "" {
		return "", fmt.Errorf("%s.name: must not be empty", path)
	}
	if src := sc.GetSdsConfig(); src != nil {
		if err := checkFields(path+".sds_config", src, configSrcFields); err != nil {
			return "", fmt.Errorf("%w (secrets are only fetched over ADS)", err)
		}
		if src.GetAds() == nil {
			return "", fmt.Errorf("%s.sds_config.ads: is required (secrets are only fetched over ADS)", path)
		}
	}
	return sc.GetName(), nil
}

var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: tls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: tls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

// cipherSuites maps Envoy's (BoringSSL's) TLS 1.2 cipher names to Go's.
// TLS 1.3 suites are not configurable, in Envoy or in Go.
var cipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

var curves = map[string]tls.CurveID{
	"X25519":         tls.X25519,
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
	"X25519MLKEM768": tls.X25519MLKEM768,
}

func compileParams(path string, p *tlsv3.TlsParameters, cfg *tls.Config) error {
	if p == nil {
		return nil
	}
	if err := checkFields(path, p, tlsParamsFields); err != nil {
		return err
	}
	if v := p.GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		min, ok := tlsVersions[v]
		if !ok {
			return fmt.Errorf("%s.tls_minimum_protocol_version: got %d, want TLS_AUTO or TLSv1_0..TLSv1_3", path, v)
		}
		cfg.MinVersion = min
	}
	if v := p.GetTlsMaximumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO {
		max, ok := tlsVersions[v]
		if !ok {
			return fmt.Errorf("%s.tls_maximum_protocol_version: got %d, want TLS_AUTO or TLSv1_0..TLSv1_3", path, v)
		}
		cfg.MaxVersion = max
	}
	if cfg.MinVersion > cfg.MaxVersion {
		return fmt.Errorf("%s: tls_minimum_protocol_version %s is above tls_maximum_protocol_version %s",
			path, p.GetTlsMinimumProtocolVersion(), p.GetTlsMaximumProtocolVersion())
	}
	for i, s := range p.GetCipherSuites() {
		// "[A|B]" is BoringSSL's equal-preference group: all members count.
		for _, name := range strings.Split(strings.Trim(s, "[]"), "|") {
			id, ok := cipherSuites[name]
			if !ok {
				return fmt.Errorf("%s.cipher_suites[%d]: unknown or unsupported cipher %q (TLS 1.2 ECDHE/RSA AES-GCM, CHACHA20-POLY1305 and AES-CBC-SHA suites are supported)", path, i, name)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	for i, s := range p.GetEcdhCurves() {
		id, ok := curves[s]
		if !ok {
			return fmt.Errorf("%s.ecdh_curves[%d]: got %q, want one of X25519, P-256, P-384, P-521, X25519MLKEM768", path, i, s)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	return nil
}

// prefixTrimmed is an error from cluster.ParseSecret with its field prefix
// dropped, because the caller's path already names the field.
type prefixTrimmed struct {
	msg string
	err error
}

func (e *prefixTrimmed) Error() string { return e.msg }
func (e *prefixTrimmed) Unwrap() error { return e.err }

func trimPrefix(err error, prefix string) error {
	return &prefixTrimmed{msg: strings.TrimPrefix(err.Error(), prefix), err: err}
}
