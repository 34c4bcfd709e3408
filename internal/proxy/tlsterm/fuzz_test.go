package tlsterm

import (
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzCompile feeds decoded DownstreamTlsContexts (untrusted xDS input) to
// Compile: it must never panic, and a context it accepts must be usable.
func FuzzCompile(f *testing.F) {
	ca := newCA(f, "ca")
	leaf := ca.issue(f, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	withInline := gatewayContext()
	withInline.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: inline(leaf.certPEM), PrivateKey: inline(leaf.keyPEM)}}
	withInline.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{CipherSuites: []string{"ECDHE-ECDSA-AES128-GCM-SHA256"}, EcdhCurves: []string{"X25519"}}
	withInline.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(ca.pem),
		MatchSubjectAltNames: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: `spiffe://.*`}}}},
		VerifyCertificateHash: []string{"00:11"},
	}}
	for _, m := range []proto.Message{gatewayContext(), mutualContext(), withInline} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(leaf), caName: caSecret(ca.pem)}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var dtc tlsv3.DownstreamTlsContext
		if proto.Unmarshal(b, &dtc) != nil {
			return
		}
		c, err := Compile("fuzz", &dtc, store)
		if err != nil {
			return
		}
		if c.Config() == nil || c.Config().GetConfigForClient == nil {
			t.Fatal("accepted context has no server config")
		}
		if len(c.inline)+len(c.certSecrets) == 0 {
			t.Fatal("accepted context has no certificate source")
		}
	})
}

// FuzzStoreApply feeds decoded Secrets to Store.Apply: no panics, and a
// rejected update leaves the store as it was.
func FuzzStoreApply(f *testing.F) {
	ca := newCA(f, "ca")
	leaf := ca.issue(f, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	for _, m := range []proto.Message{certSecret(leaf), caSecret(ca.pem)} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var sec tlsv3.Secret
		if proto.Unmarshal(b, &sec) != nil {
			return
		}
		store := NewStore()
		if err := store.Apply(map[string]*tlsv3.Secret{"good": certSecret(leaf)}); err != nil {
			t.Fatal(err)
		}
		if err := store.Apply(map[string]*tlsv3.Secret{"good": certSecret(leaf), "x": &sec}); err != nil {
			if len(store.Names()) != 1 {
				t.Fatalf("rejected update changed the store: %v", store.Names())
			}
			return
		}
		if store.Certificate("x") == nil && store.Roots("x") == nil {
			t.Fatal("accepted secret holds neither a certificate nor roots")
		}
	})
}
