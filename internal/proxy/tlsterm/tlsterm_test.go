package tlsterm

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

const (
	credName = "kubernetes://zhongmingmao-credential"
	caName   = "kubernetes://zhongmingmao-credential-cacert"
)

// waitCount waits until a counter reaches want: the server counts after
// its side of the handshake, which may end after the client's.
func waitCount(t *testing.T, name string, c *stats.Counter, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Value() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %d, want %d", name, c.Value(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSimpleGatewayHandshake(t *testing.T) {
	ca := newCA(t, "zhongmingmao CA")
	leaf := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(leaf)}); err != nil {
		t.Fatal(err)
	}
	c := mustCompile(t, gatewayContext(), store)
	addr := serve(t, c)

	cs, err := dial(addr, clientConfig(ca, "h2", "http/1.1"))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != leaf.serial {
		t.Errorf("served certificate serial: got %d, want %d", got, leaf.serial)
	}
	if len(cs.VerifiedChains) != 1 || len(cs.VerifiedChains[0]) != 2 || !cs.VerifiedChains[0][1].Equal(ca.cert) {
		t.Errorf("verified chain: got %v, want leaf then the test CA", cs.VerifiedChains)
	}
	if cs.ServerName != gatewayHost {
		t.Errorf("SNI: got %q, want %q", cs.ServerName, gatewayHost)
	}
	if cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN: got %q, want h2", cs.NegotiatedProtocol)
	}
	waitCount(t, "ssl.handshake", c.Stats().Handshake, 1)

	// A client that expects another host refuses the certificate.
	other := clientConfig(ca)
	other.ServerName = "other.zhongmingmao.io"
	if _, err := dial(addr, other); err == nil {
		t.Error("client expecting other.zhongmingmao.io: handshake succeeded, want a name mismatch")
	}
}

func TestALPN(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mustCompile(t, gatewayContext(), store))
	noALPN := gatewayContext()
	noALPN.CommonTlsContext.AlpnProtocols = nil
	plainAddr := serve(t, mustCompile(t, noALPN, store))
	for _, tc := range []struct {
		name   string
		addr   string
		client []string
		want   string
	}{
		{"h2 preferred", addr, []string{"h2", "http/1.1"}, "h2"},
		{"client order does not win", addr, []string{"http/1.1", "h2"}, "h2"},
		{"http/1.1 only", addr, []string{"http/1.1"}, "http/1.1"},
		{"no ALPN from client", addr, nil, ""},
		{"no overlap continues without ALPN", addr, []string{"spdy/3"}, ""},
		{"server without alpn_protocols", plainAddr, []string{"h2", "http/1.1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := dial(tc.addr, clientConfig(ca, tc.client...))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.NegotiatedProtocol != tc.want {
				t.Errorf("ALPN: got %q, want %q", cs.NegotiatedProtocol, tc.want)
			}
		})
	}
}

func TestCertificateChosenBySNI(t *testing.T) {
	ca := newCA(t, "ca")
	a := ca.issue(t, "a", leafOpts{dns: []string{"a.example.com"}})
	b := ca.issue(t, "b", leafOpts{dns: []string{"*.b.example.com"}})
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{"kubernetes://a": certSecret(a), "kubernetes://b": certSecret(b)}); err != nil {
		t.Fatal(err)
	}
	dtc := gatewayContext()
	dtc.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sds("kubernetes://a"), sds("kubernetes://b")}
	addr := serve(t, mustCompile(t, dtc, store))
	for _, tc := range []struct {
		sni  string
		want int64
	}{
		{"a.example.com", a.serial},
		{"x.b.example.com", b.serial},
	} {
		t.Run(tc.sni, func(t *testing.T) {
			cfg := clientConfig(ca)
			cfg.ServerName = tc.sni
			cs, err := dial(addr, cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != tc.want {
				t.Errorf("served serial: got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCertificateChosenByKeyType(t *testing.T) {
	ca := newCA(t, "ca")
	ec := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	rs := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}, rsa: true})
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{"kubernetes://ec": certSecret(ec), "kubernetes://rsa": certSecret(rs)}); err != nil {
		t.Fatal(err)
	}
	dtc := gatewayContext()
	dtc.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sds("kubernetes://ec"), sds("kubernetes://rsa")}
	addr := serve(t, mustCompile(t, dtc, store))
	for _, tc := range []struct {
		name   string
		suites []uint16
		want   int64
	}{
		{"ecdsa client gets the first certificate", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ec.serial},
		{"rsa-only client gets the rsa certificate", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, rs.serial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig(ca)
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, tc.suites
			cs, err := dial(addr, cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != tc.want {
				t.Errorf("served serial: got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	ca := newCA(t, "ca")
	first := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	second := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(first)}); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mustCompile(t, gatewayContext(), store))
	for i, want := range []issued{first, second} {
		if i > 0 {
			if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(want)}); err != nil {
				t.Fatal(err)
			}
		}
		cs, err := dial(addr, clientConfig(ca))
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != want.serial {
			t.Errorf("handshake %d: served serial %d, want %d", i, got, want.serial)
		}
	}
}

func TestMissingSecretFailsClosed(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	c := mustCompile(t, gatewayContext(), store)
	if got := c.Missing(); len(got) != 1 || got[0] != credName {
		t.Errorf("Missing before the secret: got %v, want [%s]", got, credName)
	}
	addr := serve(t, c)
	if _, err := dial(addr, clientConfig(ca)); err == nil {
		t.Fatal("handshake without the secret succeeded, want failure")
	}
	waitCount(t, "ssl.missing_secret", c.Stats().MissingSecret, 1)
	waitCount(t, "ssl.connection_error", c.Stats().ConnectionError, 1)

	// A secret of the wrong type under the name fails too.
	if err := store.Apply(map[string]*tlsv3.Secret{credName: caSecret(ca.pem)}); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, clientConfig(ca)); err == nil {
		t.Fatal("handshake with a validation secret as certificate succeeded, want failure")
	}
	waitCount(t, "ssl.missing_secret", c.Stats().MissingSecret, 2)

	// The secret arriving later fixes the same Context, no rebuild.
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	if got := c.Missing(); len(got) != 0 {
		t.Errorf("Missing after the secret arrived: got %v, want none", got)
	}
	if _, err := dial(addr, clientConfig(ca)); err != nil {
		t.Fatalf("handshake after the secret arrived: %v", err)
	}
}

func TestMutual(t *testing.T) {
	ca := newCA(t, "client ca")
	rogue := newCA(t, "rogue ca")
	serverCert := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	good := ca.issue(t, "client", leafOpts{dns: []string{"client.example.com"}, uris: []string{"spiffe://cluster.local/ns/a/sa/client"}})
	wrongSAN := ca.issue(t, "intruder", leafOpts{dns: []string{"intruder.example.com"}})
	untrusted := rogue.issue(t, "client", leafOpts{dns: []string{"client.example.com"}})
	expired := ca.issue(t, "old", leafOpts{dns: []string{"client.example.com"}, notAfter: time.Now().Add(-time.Hour)})

	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(serverCert), caName: caSecret(ca.pem)}); err != nil {
		t.Fatal(err)
	}

	sdsOnly := mutualContext()
	withSAN := mutualContext()
	withSAN.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{
				{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "client.example.com"}}},
			}},
			ValidationContextSdsSecretConfig: sds(caName),
		}}
	inlineCA := mutualContext()
	inlineCA.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa:            inline(ca.pem),
		MatchSubjectAltNames: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}}},
	}}
	allowExpired := mutualContext()
	allowExpired.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{AllowExpiredCertificate: true},
			ValidationContextSdsSecretConfig: sds(caName),
		}}
	optional := mutualContext()
	optional.RequireClientCertificate = nil

	type counter func(*Stats) *stats.Counter
	noCert := counter(func(s *Stats) *stats.Counter { return s.FailVerifyNoCert })
	badChain := counter(func(s *Stats) *stats.Counter { return s.FailVerifyError })
	badSAN := counter(func(s *Stats) *stats.Counter { return s.FailVerifySAN })
	for _, tc := range []struct {
		name    string
		dtc     *tlsv3.DownstreamTlsContext
		client  *issued
		wantErr counter // nil: accepted
	}{
		{"sds ca accepts a client of the ca", sdsOnly, &good, nil},
		{"sds ca rejects no certificate", sdsOnly, nil, noCert},
		{"sds ca rejects another ca", sdsOnly, &untrusted, badChain},
		{"sds ca rejects expired", sdsOnly, &expired, badChain},
		{"san matcher accepts", withSAN, &good, nil},
		{"san matcher rejects other name", withSAN, &wrongSAN, badSAN},
		{"inline ca with uri prefix accepts", inlineCA, &good, nil},
		{"inline ca rejects another ca", inlineCA, &untrusted, badChain},
		{"inline ca rejects a san outside the prefix", inlineCA, &wrongSAN, badSAN},
		{"allow_expired_certificate accepts expired", allowExpired, &expired, nil},
		{"optional client cert accepts none", optional, nil, nil},
		{"optional client cert still verifies one", optional, &untrusted, badChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCompile(t, tc.dtc, store)
			addr := serve(t, c)
			cfg := clientConfig(ca)
			if tc.client != nil {
				cfg.Certificates = []tls.Certificate{tc.client.tls}
			}
			_, err := dial(addr, cfg)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("handshake: %v, want success", err)
				}
				waitCount(t, "ssl.handshake", c.Stats().Handshake, 1)
				return
			}
			if err == nil {
				t.Fatal("handshake succeeded, want rejection")
			}
			waitCount(t, "the failure's counter", tc.wantErr(c.Stats()), 1)
			waitCount(t, "ssl.connection_error", c.Stats().ConnectionError, 1)
		})
	}

	t.Run("missing ca secret fails closed", func(t *testing.T) {
		empty := NewStore()
		if err := empty.Apply(map[string]*tlsv3.Secret{credName: certSecret(serverCert)}); err != nil {
			t.Fatal(err)
		}
		c := mustCompile(t, sdsOnly, empty)
		cfg := clientConfig(ca)
		cfg.Certificates = []tls.Certificate{good.tls}
		if _, err := dial(serve(t, c), cfg); err == nil {
			t.Fatal("handshake without the CA secret succeeded, want failure")
		}
		waitCount(t, "ssl.missing_secret", c.Stats().MissingSecret, 1)
	})

	t.Run("rotated ca applies to the next handshake", func(t *testing.T) {
		s := NewStore()
		if err := s.Apply(map[string]*tlsv3.Secret{credName: certSecret(serverCert), caName: caSecret(ca.pem)}); err != nil {
			t.Fatal(err)
		}
		addr := serve(t, mustCompile(t, sdsOnly, s))
		cfg := clientConfig(ca)
		cfg.Certificates = []tls.Certificate{untrusted.tls}
		if _, err := dial(addr, cfg); err == nil {
			t.Fatal("rogue client accepted before rotation")
		}
		if err := s.Apply(map[string]*tlsv3.Secret{credName: certSecret(serverCert), caName: caSecret(rogue.pem)}); err != nil {
			t.Fatal(err)
		}
		if _, err := dial(addr, cfg); err != nil {
			t.Fatalf("rogue client after the CA rotated to the rogue CA: %v", err)
		}
	})
}

func TestTLSParams(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	withParams := func(p *tlsv3.TlsParameters) *tlsv3.DownstreamTlsContext {
		c := gatewayContext()
		c.CommonTlsContext.TlsParams = p
		return c
	}
	for _, tc := range []struct {
		name           string
		params         *tlsv3.TlsParameters
		clientMax      uint16
		wantVersion    uint16 // 0: handshake fails
		wantCipherFrom []uint16
	}{
		{"default negotiates 1.3", nil, 0, tls.VersionTLS13, nil},
		{"default accepts a 1.2 client", nil, tls.VersionTLS12, tls.VersionTLS12, nil},
		{"min 1.3 rejects a 1.2 client", &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3}, tls.VersionTLS12, 0, nil},
		{"max 1.2 caps the version", &tlsv3.TlsParameters{TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_2}, 0, tls.VersionTLS12, nil},
		{"cipher suites restrict 1.2", &tlsv3.TlsParameters{
			TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
			CipherSuites:              []string{"[ECDHE-ECDSA-AES256-GCM-SHA384|ECDHE-RSA-AES256-GCM-SHA384]"},
		}, 0, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
		{"ecdh curves", &tlsv3.TlsParameters{EcdhCurves: []string{"P-256"}}, 0, tls.VersionTLS13, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, mustCompile(t, withParams(tc.params), store))
			cfg := clientConfig(ca)
			cfg.MaxVersion = tc.clientMax
			cs, err := dial(addr, cfg)
			if tc.wantVersion == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded with version %x, want failure", cs.Version)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.Version != tc.wantVersion {
				t.Errorf("version: got %x, want %x", cs.Version, tc.wantVersion)
			}
			if tc.wantCipherFrom != nil && cs.CipherSuite != tc.wantCipherFrom[0] {
				t.Errorf("cipher: got %s, want %s", tls.CipherSuiteName(cs.CipherSuite), tls.CipherSuiteName(tc.wantCipherFrom[0]))
			}
		})
	}
}

func TestRequireSNI(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	dtc := gatewayContext()
	dtc.RequireSni = wrapperspb.Bool(true)
	c := mustCompile(t, dtc, store)
	addr := serve(t, c)
	// No ServerName and dialing an IP: the client sends no SNI.
	if _, err := dial(addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatal("handshake without SNI succeeded, want failure")
	}
	waitCount(t, "ssl.missing_sni", c.Stats().MissingSNI, 1)
	if _, err := dial(addr, clientConfig(ca)); err != nil {
		t.Fatalf("handshake with SNI: %v", err)
	}
}

func TestInlineCertificates(t *testing.T) {
	ca := newCA(t, "ca")
	leaf := ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, leaf.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, leaf.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *tlsv3.TlsCertificate
	}{
		{"inline_bytes", &tlsv3.TlsCertificate{CertificateChain: inline(leaf.certPEM), PrivateKey: inline(leaf.keyPEM)}},
		{"filename", &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: certFile}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: keyFile}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dtc := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols: []string{"http/1.1"}, TlsCertificates: []*tlsv3.TlsCertificate{tc.cert}}}
			// No store at all: inline certificates need none.
			c, err := Compile("chain", dtc, nil)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := dial(serve(t, c), clientConfig(ca, "http/1.1"))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != leaf.serial {
				t.Errorf("served serial: got %d, want %d", got, leaf.serial)
			}
			if cs.NegotiatedProtocol != "http/1.1" {
				t.Errorf("ALPN: got %q, want http/1.1", cs.NegotiatedProtocol)
			}
		})
	}
}

func TestBindStats(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	st := stats.NewStore()
	c := mustCompile(t, gatewayContext(), store)
	c.BindStats(st.Scope("listener", stats.ListenerStatName("0.0.0.0:443")))
	if _, err := dial(serve(t, c), clientConfig(ca)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, "ssl.handshake", c.Stats().Handshake, 1)
	if got := st.CounterValue("listener.0.0.0.0_443.ssl.handshake"); got != 1 {
		t.Errorf("listener.0.0.0.0_443.ssl.handshake: got %d, want 1", got)
	}
}

// TestHandshakeAfterSniff: the listener peeks the ClientHello (for SNI
// matching) into a bufio.Reader before the chain's Context runs; the
// handshake must replay those bytes.
func TestHandshakeAfterSniff(t *testing.T) {
	ca := newCA(t, "ca")
	store := NewStore()
	if err := store.Apply(map[string]*tlsv3.Secret{credName: certSecret(ca.issue(t, gatewayHost, leafOpts{dns: []string{gatewayHost}}))}); err != nil {
		t.Fatal(err)
	}
	c := mustCompile(t, gatewayContext(), store)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peeked := make(chan byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		head, err := br.Peek(5) // TLS record header, as tls_inspector reads it
		if err != nil {
			return
		}
		peeked <- head[0]
		tc, err := c.HandshakeReader(context.Background(), conn, br)
		if err != nil {
			return
		}
		tc.Write([]byte("ok " + tc.ConnectionState().NegotiatedProtocol + "\n"))
		tc.Close()
	}()
	cs, err := dial(ln.Addr().String(), clientConfig(ca, "h2"))
	if err != nil {
		t.Fatalf("handshake after a peek: %v", err)
	}
	if got := <-peeked; got != 0x16 {
		t.Errorf("peeked record type: got %#x, want 0x16 (handshake)", got)
	}
	if cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN: got %q, want h2", cs.NegotiatedProtocol)
	}
}
