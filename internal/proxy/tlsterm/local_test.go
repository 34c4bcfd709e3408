package tlsterm

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// TestLocalSecretsSurviveXDSUpdates: the proxy's own `default` and
// `ROOTCA` stay in place across state-of-the-world SDS updates that do not
// carry them, win over an xDS secret of the same name, and an invalid
// local set changes nothing.
func TestLocalSecretsSurviveXDSUpdates(t *testing.T) {
	mesh, other := newCA(t, "mesh"), newCA(t, "other")
	own := mesh.issue(t, "own", leafOpts{})
	gw := other.issue(t, "gw", leafOpts{})
	s := NewStore()
	if err := s.SetLocal(map[string]*tlsv3.Secret{"default": certSecret(own), "ROOTCA": caSecret(mesh.pem)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(map[string]*tlsv3.Secret{"kubernetes://gw": certSecret(gw), "default": certSecret(gw)}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(s.Names(), ","), "ROOTCA,default,kubernetes://gw"; got != want {
		t.Fatalf("names: got %s, want %s", got, want)
	}
	if c := s.Certificate("default"); c == nil || string(c.Certificate[0]) != string(own.tls.Certificate[0]) {
		t.Fatal("default: the xDS secret replaced the proxy's own")
	}
	if err := s.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if s.Certificate("default") == nil || s.Roots("ROOTCA") == nil || s.Certificate("kubernetes://gw") != nil {
		t.Fatalf("after an empty SDS update: got %v, want default and ROOTCA only", s.Names())
	}
	bad := &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline([]byte("junk"))}}}
	if err := s.SetLocal(map[string]*tlsv3.Secret{"ROOTCA": bad}); err == nil || !strings.Contains(err.Error(), `secret "ROOTCA"`) {
		t.Fatalf("invalid local secret: got %v, want an error naming it", err)
	}
	if s.Certificate("default") == nil {
		t.Fatal("an invalid local update dropped the served certificate")
	}
}
