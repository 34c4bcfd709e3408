package tlsterm

import (
	"crypto/tls"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// BenchmarkSelectConfig measures the per-handshake work tlsterm adds on
// top of crypto/tls: picking the per-client config (ALPN) and resolving
// the SDS certificate from the store. It must not allocate.
func BenchmarkSelectConfig(b *testing.B) {
	ca := newCA(b, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(b, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		b.Fatal(err)
	}
	c := mustCompile(b, gatewayContext(), store)
	hello := &tls.ClientHelloInfo{ServerName: gatewayHost, SupportedProtos: []string{"h2", "http/1.1"}}
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := c.Config().GetConfigForClient(hello)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cfg.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSelectConfigAllocs(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	c := mustCompile(t, gatewayContext(), store)
	hello := &tls.ClientHelloInfo{ServerName: gatewayHost, SupportedProtos: []string{"h2"}}
	allocs := testing.AllocsPerRun(100, func() {
		cfg, _ := c.Config().GetConfigForClient(hello)
		cfg.GetCertificate(hello)
	})
	if allocs != 0 {
		t.Errorf("allocations per handshake lookup: got %v, want 0", allocs)
	}
}
