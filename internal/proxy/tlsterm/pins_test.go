package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestClientPins(t *testing.T) {
	ca := newCA(t, "ca")
	rogue := newCA(t, "rogue")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	pinned := ca.issue(t, "pinned", leafOpts{dns: []string{"pinned"}})
	other := ca.issue(t, "other", leafOpts{dns: []string{"other"}})
	selfPinned := rogue.issue(t, "self", leafOpts{dns: []string{"self"}})

	hash := func(c issued) string {
		h := sha256.Sum256(c.tls.Leaf.Raw)
		s := strings.ToUpper(hex.EncodeToString(h[:]))
		var b strings.Builder // colon-separated, as openssl prints it
		for i := 0; i < len(s); i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		return b.String()
	}
	spki := func(c issued) string {
		h := sha256.Sum256(c.tls.Leaf.RawSubjectPublicKeyInfo)
		return base64.StdEncoding.EncodeToString(h[:])
	}
	ctx := func(vc *tlsv3.CertificateValidationContext) *tlsv3.DownstreamTlsContext {
		c := gatewayContext()
		c.RequireClientCertificate = wrapperspb.Bool(true)
		c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		return c
	}
	for _, tc := range []struct {
		name   string
		vc     *tlsv3.CertificateValidationContext
		client issued
		ok     bool
	}{
		{"hash pin accepts", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), VerifyCertificateHash: []string{hash(pinned)}}, pinned, true},
		{"hash pin rejects another cert of the ca", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), VerifyCertificateHash: []string{hash(pinned)}}, other, false},
		{"spki pin accepts", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), VerifyCertificateSpki: []string{spki(pinned)}}, pinned, true},
		{"spki pin rejects", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem), VerifyCertificateSpki: []string{spki(pinned)}}, other, false},
		{"hash pin without ca accepts any issuer", &tlsv3.CertificateValidationContext{VerifyCertificateHash: []string{hash(selfPinned)}}, selfPinned, true},
		{"accept_untrusted skips the chain but keeps pins", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem),
			TrustChainVerification: tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED, VerifyCertificateSpki: []string{spki(selfPinned)}}, selfPinned, true},
		{"untrusted issuer rejected by default", &tlsv3.CertificateValidationContext{TrustedCa: inline(ca.pem),
			VerifyCertificateSpki: []string{spki(selfPinned)}}, selfPinned, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCompile(t, ctx(tc.vc), store)
			cfg := clientConfig(ca)
			cfg.Certificates = []tls.Certificate{tc.client.tls}
			_, err := dial(serve(t, c), cfg)
			if tc.ok && err != nil {
				t.Fatalf("handshake: %v, want success", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("handshake succeeded, want rejection")
				}
				waitCount(t, "ssl.connection_error", c.Stats().ConnectionError, 1)
			}
		})
	}
}
