package tlsterm

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Fields Trellis implements, by message. Any other field that is set is
// rejected with its path, so that config is never silently half-applied.
var (
	downstreamFields = fieldSet("common_tls_context", "require_client_certificate", "require_sni",
		"disable_stateless_session_resumption", "disable_stateful_session_resumption",
		"prefer_client_ciphers", "full_scan_certs_on_sni_mismatch")
	commonFields = fieldSet("tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config", "combined_validation_context",
		"alpn_protocols")
	tlsParamsFields      = fieldSet("tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves")
	tlsCertificateFields = fieldSet("certificate_chain", "private_key")
	validationFields     = fieldSet("trusted_ca", "verify_certificate_spki", "verify_certificate_hash",
		"match_typed_subject_alt_names", "match_subject_alt_names", "allow_expired_certificate", "trust_chain_verification")
	combinedFields  = fieldSet("default_validation_context", "validation_context_sds_secret_config")
	sdsConfigFields = fieldSet("name", "sds_config")
	configSrcFields = fieldSet("ads", "resource_api_version", "initial_fetch_timeout")
)

func fieldSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkFields rejects the first (by name) field of m that is set but not
// in allowed.
func checkFields(path string, m proto.Message, allowed map[string]bool) error {
	var bad []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !allowed[string(fd.Name())] {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s.%s: is not supported by trellis-proxy; remove it", path, bad[0])
}

// peerChecks are the checks on a client certificate beyond the chain:
// subject alternative names, certificate hashes and SPKI pins, as in a
// CertificateValidationContext.
type peerChecks struct {
	sans            []sanMatcher
	hashes          [][sha256.Size]byte
	spkis           [][sha256.Size]byte
	allowExpired    bool
	acceptUntrusted bool
}

type sanMatcher struct {
	typ tlsv3.SubjectAltNameMatcher_SanType // SAN_TYPE_UNSPECIFIED matches any type
	m   stringMatcher
}

type stringMatcher struct {
	exact, prefix, suffix, contains string
	re                              *regexp.Regexp
	ignoreCase                      bool
}

func compileStringMatcher(path string, m *matcherv3.StringMatcher) (stringMatcher, error) {
	if err := checkFields(path, m, fieldSet("exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case")); err != nil {
		return stringMatcher{}, err
	}
	sm := stringMatcher{ignoreCase: m.GetIgnoreCase()}
	fold := func(s string) string {
		if sm.ignoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.exact = fold(p.Exact)
		if sm.exact == "" {
			return sm, fmt.Errorf("%s.exact: must not be empty", path)
		}
	case *matcherv3.StringMatcher_Prefix:
		sm.prefix = fold(p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		sm.suffix = fold(p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		sm.contains = fold(p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		expr := p.SafeRegex.GetRegex()
		if sm.ignoreCase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			return sm, fmt.Errorf("%s.safe_regex.regex: %w", path, err)
		}
		sm.re = re
	default:
		return sm, fmt.Errorf("%s: set one of exact, prefix, suffix, contains or safe_regex", path)
	}
	if sm.re == nil && sm.exact == "" && sm.prefix == "" && sm.suffix == "" && sm.contains == "" {
		return sm, fmt.Errorf("%s: the pattern must not be empty", path)
	}
	return sm, nil
}

func (m stringMatcher) match(s string) bool {
	if m.re != nil {
		return m.re.MatchString(s)
	}
	if m.ignoreCase {
		s = strings.ToLower(s)
	}
	switch {
	case m.exact != "":
		return s == m.exact
	case m.prefix != "":
		return strings.HasPrefix(s, m.prefix)
	case m.suffix != "":
		return strings.HasSuffix(s, m.suffix)
	}
	return strings.Contains(s, m.contains)
}

// compilePeerChecks compiles a validation context's checks other than
// trusted_ca (which the caller owns); nil means no checks.
func compilePeerChecks(path string, vc *tlsv3.CertificateValidationContext) (*peerChecks, error) {
	if err := checkFields(path, vc, validationFields); err != nil {
		return nil, err
	}
	pc := &peerChecks{
		allowExpired:    vc.GetAllowExpiredCertificate(),
		acceptUntrusted: vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED,
	}
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		p := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", path, i)
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_EMAIL,
			tlsv3.SubjectAltNameMatcher_URI, tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
		default:
			return nil, fmt.Errorf("%s.san_type: got %s, want DNS, EMAIL, URI or IP_ADDRESS", p, m.GetSanType())
		}
		if m.GetMatcher() == nil {
			return nil, fmt.Errorf("%s.matcher: is required", p)
		}
		sm, err := compileStringMatcher(p+".matcher", m.GetMatcher())
		if err != nil {
			return nil, err
		}
		pc.sans = append(pc.sans, sanMatcher{typ: m.GetSanType(), m: sm})
	}
	for i, m := range vc.GetMatchSubjectAltNames() {
		sm, err := compileStringMatcher(fmt.Sprintf("%s.match_subject_alt_names[%d]", path, i), m)
		if err != nil {
			return nil, err
		}
		pc.sans = append(pc.sans, sanMatcher{m: sm})
	}
	for i, h := range vc.GetVerifyCertificateHash() {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s.verify_certificate_hash[%d]: got %q, want a hex SHA-256 digest (64 digits, colons allowed)", path, i, h)
		}
		pc.hashes = append(pc.hashes, [sha256.Size]byte(b))
	}
	for i, s := range vc.GetVerifyCertificateSpki() {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s.verify_certificate_spki[%d]: got %q, want a base64 SHA-256 digest of the SubjectPublicKeyInfo", path, i, s)
		}
		pc.spkis = append(pc.spkis, [sha256.Size]byte(b))
	}
	if len(pc.sans) == 0 && len(pc.hashes) == 0 && len(pc.spkis) == 0 && !pc.allowExpired && !pc.acceptUntrusted {
		return nil, nil
	}
	return pc, nil
}

// errVerify* classify verification failures for the stats.
var (
	errVerifyChain = errors.New("client certificate chain is not trusted")
	errVerifySAN   = errors.New("client certificate subject alternative names match none of the validation context's matchers")
	errVerifyHash  = errors.New("client certificate matches none of the pinned hashes or SPKIs")
)

// verifyChain verifies the leaf against roots with the intermediates the
// client sent. Extended key usage is not checked, as in Envoy.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, allowExpired bool) error {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	_, err := leaf.Verify(opts)
	var inv x509.CertificateInvalidError
	if err != nil && allowExpired && errors.As(err, &inv) && inv.Reason == x509.Expired {
		opts.CurrentTime = leaf.NotAfter.Add(-time.Second)
		_, err = leaf.Verify(opts)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errVerifyChain, err)
	}
	return nil
}

// check applies the SAN and pin checks to leaf.
func (pc *peerChecks) check(leaf *x509.Certificate) error {
	if pc == nil {
		return nil
	}
	if len(pc.sans) > 0 && !pc.matchSAN(leaf) {
		return errVerifySAN
	}
	if len(pc.hashes) == 0 && len(pc.spkis) == 0 {
		return nil
	}
	h := sha256.Sum256(leaf.Raw)
	for _, w := range pc.hashes {
		if h == w {
			return nil
		}
	}
	s := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	for _, w := range pc.spkis {
		if bytes.Equal(s[:], w[:]) {
			return nil
		}
	}
	return errVerifyHash
}

func (pc *peerChecks) matchSAN(leaf *x509.Certificate) bool {
	for _, m := range pc.sans {
		any := m.typ == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED
		if any || m.typ == tlsv3.SubjectAltNameMatcher_DNS {
			for _, n := range leaf.DNSNames {
				if m.m.match(n) {
					return true
				}
			}
		}
		if any || m.typ == tlsv3.SubjectAltNameMatcher_EMAIL {
			for _, n := range leaf.EmailAddresses {
				if m.m.match(n) {
					return true
				}
			}
		}
		if any || m.typ == tlsv3.SubjectAltNameMatcher_URI {
			for _, u := range leaf.URIs {
				if m.m.match(u.String()) {
					return true
				}
			}
		}
		if any || m.typ == tlsv3.SubjectAltNameMatcher_IP_ADDRESS {
			for _, ip := range leaf.IPAddresses {
				if m.m.match(ip.String()) {
					return true
				}
			}
		}
	}
	return false
}
