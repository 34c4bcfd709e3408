package identity

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

type nopSink struct{}

func (nopSink) SetLocal(map[string]*tlsv3.Secret) error { return nil }

// TestNewNamesWhatIsMissing: each missing or bad option is reported with
// what sets it; defaults fill the trust domain, service account and the
// name verified in the CA's certificate.
func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := New(Options{Address: "trellisd", TTL: -time.Second})
	for _, want := range []string{`CA address "trellisd": want host:port`, "TRELLIS_CA_ROOT_CERT", "TRELLIS_CA_TOKEN_FD", "POD_NAMESPACE", "sink: is required", "must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to say %q", err, want)
		}
	}
	a, err := New(Options{Address: "10.0.0.1:15012", RootCertFile: "root.pem", Namespace: "shop", Sink: nopSink{},
		Token: func() (string, error) { return "t", nil }})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.SPIFFEID(), "spiffe://cluster.local/ns/shop/sa/default"; got != want {
		t.Errorf("identity: got %s, want %s", got, want)
	}
	if a.o.ServerName != "10.0.0.1" {
		t.Errorf("server name: got %q, want the address's host", a.o.ServerName)
	}
}

// TestRenewAfterHalfTheRemainingLife: renewal is due at half of what is
// left of the leaf, spread by at most a tenth either way.
func TestRenewAfterHalfTheRemainingLife(t *testing.T) {
	now := time.Now()
	leaf := &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour)}
	if got := renewAfter(now, leaf); got != 12*time.Hour {
		t.Errorf("renewAfter: got %s, want 12h", got)
	}
	if got := renewAfter(now, &x509.Certificate{NotAfter: now.Add(-time.Hour)}); got != 0 {
		t.Errorf("expired leaf: got %s, want 0", got)
	}
	for i := 0; i < 100; i++ {
		if d := jitter(10*time.Hour, 10); d < 9*time.Hour || d > 11*time.Hour {
			t.Fatalf("jitter(10h): got %s, want within 9h..11h", d)
		}
	}
}
