package tlsterm

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestCompileRejectsInvalid(t *testing.T) {
	ca := newCA(t, "ca")
	leaf := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	const p = `chain.transport_socket.typed_config`
	with := func(f func(*tlsv3.DownstreamTlsContext)) *tlsv3.DownstreamTlsContext {
		c := gatewayContext()
		f(c)
		return c
	}
	vc := func(v *tlsv3.CertificateValidationContext) func(*tlsv3.DownstreamTlsContext) {
		return func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: v}
		}
	}
	for _, tc := range []struct {
		name string
		dtc  *tlsv3.DownstreamTlsContext
		want string // the error must contain it
	}{
		{"nil context", nil, p + ": a DownstreamTlsContext is required"},
		{"no common_tls_context", &tlsv3.DownstreamTlsContext{}, p + ".common_tls_context: is required"},
		{"no certificate", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2"}}},
			p + ".common_tls_context: a server certificate is required"},
		{"session_timeout", with(func(c *tlsv3.DownstreamTlsContext) { c.SessionTimeout = durationpb.New(1) }),
			p + ".session_timeout: is not supported"},
		{"session ticket keys", with(func(c *tlsv3.DownstreamTlsContext) {
			c.SessionTicketKeysType = &tlsv3.DownstreamTlsContext_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{}}
		}), p + ".session_ticket_keys: is not supported"},
		{"ocsp must staple", with(func(c *tlsv3.DownstreamTlsContext) { c.OcspStaplePolicy = tlsv3.DownstreamTlsContext_MUST_STAPLE }),
			p + ".ocsp_staple_policy: is not supported"},
		{"key_log", with(func(c *tlsv3.DownstreamTlsContext) { c.CommonTlsContext.KeyLog = &tlsv3.TlsKeyLog{Path: "/tmp/k"} }),
			p + ".common_tls_context.key_log: is not supported"},
		{"empty sds name", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].Name = ""
		}), p + ".common_tls_context.tls_certificate_sds_secret_configs[0].name: must not be empty"},
		{"sds over a non-ads source", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].SdsConfig = &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/etc/sds.yaml"}}
		}), p + ".common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.path: is not supported"},
		{"inline cert without key", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: inline(leaf.certPEM)}}
		}), p + ".common_tls_context.tls_certificates[0]: certificate_chain and private_key are both required"},
		{"inline cert with a key that does not match", with(func(c *tlsv3.DownstreamTlsContext) {
			other := ca.issue(t, "other", leafOpts{})
			c.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: inline(leaf.certPEM), PrivateKey: inline(other.keyPEM)}}
		}), p + ".common_tls_context.tls_certificates[0]: invalid certificate or key"},
		{"inline cert missing file", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/nonexistent/tls.crt"}},
				PrivateKey:       inline(leaf.keyPEM)}}
		}), p + ".common_tls_context.tls_certificates[0]: read /nonexistent/tls.crt"},
		{"inline cert password", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: inline(leaf.certPEM), PrivateKey: inline(leaf.keyPEM),
				Password: inline([]byte("x"))}}
		}), p + ".common_tls_context.tls_certificates[0].password: is not supported"},
		{"require client cert without validation", with(func(c *tlsv3.DownstreamTlsContext) {
			c.RequireClientCertificate = wrapperspb.Bool(true)
		}), p + ".require_client_certificate: needs a validation context"},
		{"trusted_ca without PEM", with(vc(&tlsv3.CertificateValidationContext{TrustedCa: inline([]byte("not pem"))})),
			p + ".common_tls_context.validation_context.trusted_ca: no PEM certificates found"},
		{"crl", with(vc(&tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), Crl: inline([]byte("x"))})),
			p + ".common_tls_context.validation_context.crl: is not supported"},
		{"other_name san", with(vc(&tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{
			{SanType: tlsv3.SubjectAltNameMatcher_OTHER_NAME, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}}}})),
			p + ".common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type: got OTHER_NAME"},
		{"san without matcher", with(vc(&tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{
			{SanType: tlsv3.SubjectAltNameMatcher_DNS}}})),
			p + ".common_tls_context.validation_context.match_typed_subject_alt_names[0].matcher: is required"},
		{"bad san regex", with(vc(&tlsv3.CertificateValidationContext{MatchSubjectAltNames: []*matcherv3.StringMatcher{
			{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}}})),
			p + ".common_tls_context.validation_context.match_subject_alt_names[0].safe_regex.regex:"},
		{"bad cert hash", with(vc(&tlsv3.CertificateValidationContext{VerifyCertificateHash: []string{"abc"}})),
			p + ".common_tls_context.validation_context.verify_certificate_hash[0]: got \"abc\""},
		{"bad spki", with(vc(&tlsv3.CertificateValidationContext{VerifyCertificateSpki: []string{"!!"}})),
			p + ".common_tls_context.validation_context.verify_certificate_spki[0]"},
		{"combined without sds", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{}}
		}), p + ".common_tls_context.combined_validation_context.validation_context_sds_secret_config: is required"},
		{"combined with two CAs", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem)},
					ValidationContextSdsSecretConfig: sds(caName)}}
		}), p + ".common_tls_context.combined_validation_context.default_validation_context.trusted_ca: the trusted CA comes from validation_context_sds_secret_config"},
		{"min above max", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
				TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_2}
		}), p + ".common_tls_context.tls_params: tls_minimum_protocol_version TLSv1_3 is above tls_maximum_protocol_version TLSv1_2"},
		{"unknown version", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: 9}
		}), p + ".common_tls_context.tls_params.tls_minimum_protocol_version: got 9"},
		{"unknown cipher", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{CipherSuites: []string{"RC4-MD5"}}
		}), p + ".common_tls_context.tls_params.cipher_suites[0]: unknown or unsupported cipher \"RC4-MD5\""},
		{"unknown curve", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{EcdhCurves: []string{"P-224"}}
		}), p + ".common_tls_context.tls_params.ecdh_curves[0]: got \"P-224\""},
		{"signature algorithms", with(func(c *tlsv3.DownstreamTlsContext) {
			c.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{SignatureAlgorithms: []string{"ecdsa_secp256r1_sha256"}}
		}), p + ".common_tls_context.tls_params.signature_algorithms: is not supported"},
		{"empty alpn", with(func(c *tlsv3.DownstreamTlsContext) { c.CommonTlsContext.AlpnProtocols = []string{"h2", ""} }),
			p + ".common_tls_context.alpn_protocols[1]: got \"\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compile(p, tc.dtc, NewStore())
			if err == nil {
				t.Fatalf("Compile: got a context (secrets %v), want an error containing %q", c.SecretNames(), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error: got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCompileTransportSocket(t *testing.T) {
	const p = `listener "0.0.0.0_443".filter_chains[0].transport_socket`
	good, err := anypb.New(gatewayContext())
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := anypb.New(&tlsv3.UpstreamTlsContext{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		ts      *corev3.TransportSocket
		wantNil bool
		wantErr string
	}{
		{"none", nil, true, ""},
		{"raw_buffer", &corev3.TransportSocket{Name: RawBufferTransportSocket}, true, ""},
		{"tls", &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: good}}, false, ""},
		{"unknown socket", &corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}, false, p + `.name: got "envoy.transport_sockets.alts"`},
		{"upstream context", &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: upstream}},
			false, p + ".typed_config: must be an envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"},
		{"no typed_config", &corev3.TransportSocket{Name: TLSTransportSocket}, false, p + ".typed_config: must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CompileTransportSocket(p, tc.ts, NewStore())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error: got %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (c == nil) != tc.wantNil {
				t.Errorf("context: got %v, want nil=%v", c, tc.wantNil)
			}
			if c != nil && strings.Join(c.SecretNames(), ",") != credName {
				t.Errorf("secret names: got %v, want [%s]", c.SecretNames(), credName)
			}
		})
	}
}

func TestStoreApply(t *testing.T) {
	ca := newCA(t, "ca")
	a := ca.issue(t, "a", leafOpts{dns: []string{"a"}})
	b := ca.issue(t, "b", leafOpts{dns: []string{"b"}})
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{"kubernetes://a": certSecret(a), caName: caSecret(ca.pem)}); err != nil {
		t.Fatal(err)
	}
	badKey := certSecret(b)
	badKey.GetTlsCertificate().PrivateKey = inline(a.keyPEM)
	for _, tc := range []struct {
		name    string
		secrets map[string]*tlsv3.Secret
		want    string
	}{
		{"key of another certificate", map[string]*tlsv3.Secret{"kubernetes://a": certSecret(b), "kubernetes://b": badKey},
			`secret "kubernetes://b": tls_certificate: invalid certificate or key`},
		{"ca without PEM", map[string]*tlsv3.Secret{caName: caSecret([]byte("junk"))},
			`secret "` + caName + `": validation_context.trusted_ca: no PEM certificates found`},
		{"validation secret without trusted_ca", map[string]*tlsv3.Secret{caName: {Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{AllowExpiredCertificate: true}}}},
			`secret "` + caName + `": validation_context.trusted_ca: is required`},
		{"unsupported field", map[string]*tlsv3.Secret{caName: {Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), Crl: inline([]byte("x"))}}}},
			`secret "` + caName + `": validation_context.crl: is not supported`},
		{"session ticket keys secret", map[string]*tlsv3.Secret{"k": {Type: &tlsv3.Secret_SessionTicketKeys{}}},
			`secret "k": only tls_certificate and validation_context secrets are supported`},
		{"nil secret", map[string]*tlsv3.Secret{"k": nil}, `secret "k": secret is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := store.Apply(tc.secrets)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error: got %v, want it to contain %q", err, tc.want)
			}
			// The whole update is rejected: the last good set still serves.
			if got := store.Certificate("kubernetes://a"); got == nil || got.Leaf.SerialNumber.Int64() != a.serial {
				t.Errorf("after a rejected update: certificate a is %v, want serial %d", got, a.serial)
			}
			if got := strings.Join(store.Names(), ","); got != "kubernetes://a,"+caName {
				t.Errorf("after a rejected update: names %q, want %q", got, "kubernetes://a,"+caName)
			}
		})
	}

	// A good update replaces the whole set.
	anyB, err := anypb.New(certSecret(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyAny(map[string]*anypb.Any{"kubernetes://b": anyB}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(store.Names(), ","); got != "kubernetes://b" {
		t.Errorf("names after ApplyAny: got %q, want kubernetes://b", got)
	}
	if store.Certificate("kubernetes://a") != nil || store.Roots(caName) != nil {
		t.Error("secrets missing from a state-of-the-world update are still stored")
	}
	notSecret, err := anypb.New(&tlsv3.UpstreamTlsContext{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyAny(map[string]*anypb.Any{"x": notSecret}); err == nil || !strings.Contains(err.Error(), `secret "x": decode`) {
		t.Errorf("ApplyAny of a non-secret: got %v, want a decode error", err)
	}
}
