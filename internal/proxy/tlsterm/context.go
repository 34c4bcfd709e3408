package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Context is a compiled DownstreamTlsContext: what one filter chain needs
// to terminate TLS. It is immutable after Compile (except BindStats) and
// safe for concurrent handshakes.
type Context struct {
	path  string
	store *Store

	inline      []*tls.Certificate // tls_certificates
	certSecrets []string           // tls_certificate_sds_secret_configs names

	requireSNI    bool
	requireClient bool
	caSecret      string // validation context from SDS; "" for none
	hasStatic     bool
	static        *peerChecks    // inline (or combined default) validation checks
	staticRoots   *x509.CertPool // inline trusted_ca; nil for none

	base  *tls.Config // what Config returns: picks plain or alpn per ClientHello
	plain *tls.Config // without ALPN
	alpn  *tls.Config // with NextProtos; nil without alpn_protocols

	st atomic.Pointer[Stats]
}

// Stats are the handshake counters of a Context, named like Envoy's
// listener ssl.* stats once bound to a listener scope with BindStats.
type Stats struct {
	Handshake          *stats.Counter // ssl.handshake: completed handshakes
	ConnectionError    *stats.Counter // ssl.connection_error: failed handshakes
	MissingSecret      *stats.Counter // ssl.missing_secret: an SDS secret had not arrived
	MissingSNI         *stats.Counter // ssl.missing_sni: require_sni and no SNI
	FailVerifyNoCert   *stats.Counter // ssl.fail_verify_no_cert
	FailVerifyError    *stats.Counter // ssl.fail_verify_error: untrusted chain
	FailVerifySAN      *stats.Counter // ssl.fail_verify_san
	FailVerifyCertHash *stats.Counter // ssl.fail_verify_cert_hash
}

func newStats() *Stats {
	return &Stats{new(stats.Counter), new(stats.Counter), new(stats.Counter), new(stats.Counter),
		new(stats.Counter), new(stats.Counter), new(stats.Counter), new(stats.Counter)}
}

// BindStats makes the Context count into sc (a listener scope, e.g.
// store.Scope("listener", stats.ListenerStatName(addr))). Contexts bound
// to the same scope share counters, so a recompiled listener keeps
// counting.
func (c *Context) BindStats(sc stats.Scope) {
	c.st.Store(&Stats{
		Handshake:          sc.Counter("ssl.handshake"),
		ConnectionError:    sc.Counter("ssl.connection_error"),
		MissingSecret:      sc.Counter("ssl.missing_secret"),
		MissingSNI:         sc.Counter("ssl.missing_sni"),
		FailVerifyNoCert:   sc.Counter("ssl.fail_verify_no_cert"),
		FailVerifyError:    sc.Counter("ssl.fail_verify_error"),
		FailVerifySAN:      sc.Counter("ssl.fail_verify_san"),
		FailVerifyCertHash: sc.Counter("ssl.fail_verify_cert_hash"),
	})
}

// Stats returns the counters the Context currently counts into.
func (c *Context) Stats() *Stats { return c.st.Load() }

// Config returns the server tls.Config. It resolves certificates and
// trusted CAs from the Store at every handshake; callers must not modify
// it. Prefer Handshake, which also counts ssl.handshake and
// ssl.connection_error; with Config alone only the failure-reason
// counters (missing secret, verification) are kept.
func (c *Context) Config() *tls.Config { return c.base }

// SecretNames returns the SDS secrets the Context reads (certificates,
// then the validation context's), for debugging and warming checks.
func (c *Context) SecretNames() []string {
	names := append([]string(nil), c.certSecrets...)
	if c.caSecret != "" {
		names = append(names, c.caSecret)
	}
	return names
}

// Missing returns the SDS secrets the Context reads that the Store does not
// hold with the right type; handshakes fail until it is empty (Envoy would
// call the listener warming).
func (c *Context) Missing() []string {
	var out []string
	for _, n := range c.certSecrets {
		if sec := c.store.get(n); sec == nil || sec.cert == nil {
			out = append(out, n)
		}
	}
	if c.caSecret != "" {
		if sec := c.store.get(c.caSecret); sec == nil || sec.roots == nil {
			out = append(out, c.caSecret)
		}
	}
	return out
}

// ALPN returns the protocols offered in ALPN, in preference order.
func (c *Context) ALPN() []string {
	if c.alpn == nil {
		return nil
	}
	return c.alpn.NextProtos
}

// Handshake runs the server handshake on conn and counts it. On success
// the caller reads NegotiatedProtocol from the returned conn's
// ConnectionState to pick HTTP/2 or HTTP/1.1; on failure the caller closes
// conn.
func (c *Context) Handshake(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	tc := tls.Server(conn, c.base)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.st.Load().ConnectionError.Inc()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	c.st.Load().Handshake.Inc()
	return tc, nil
}

// HandshakeReader is Handshake for a connection whose first bytes were
// already read into r (the listener's sniffing reader, which peeked the
// ClientHello for the SNI): the handshake reads through r, writes go to
// conn.
func (c *Context) HandshakeReader(ctx context.Context, conn net.Conn, r io.Reader) (*tls.Conn, error) {
	return c.Handshake(ctx, &replayConn{Conn: conn, r: r})
}

// replayConn reads from r (buffered bytes, then the connection) and
// writes to the connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (rc *replayConn) Read(p []byte) (int, error) { return rc.r.Read(p) }

// configForClient picks the per-connection config: ALPN is offered only
// when the client's list overlaps ours, because Go would otherwise fail
// the handshake where Envoy carries on without ALPN.
func (c *Context) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if c.requireSNI && hello.ServerName == "" {
		c.st.Load().MissingSNI.Inc()
		return nil, errors.New("require_sni is set and the client sent no server name")
	}
	if c.alpn == nil {
		return c.plain, nil
	}
	for _, ours := range c.alpn.NextProtos {
		for _, theirs := range hello.SupportedProtos {
			if ours == theirs {
				return c.alpn, nil
			}
		}
	}
	return c.plain, nil
}

// getCertificate picks the server certificate at handshake time: the only
// one, or among several the first the client supports whose names cover
// the SNI, else the first the client supports, else the first.
func (c *Context) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(c.certSecrets) == 0 && len(c.inline) == 1 {
		return c.inline[0], nil
	}
	var buf [4]*tls.Certificate
	list := append(buf[:0], c.inline...)
	for _, name := range c.certSecrets {
		sec := c.store.get(name)
		if sec == nil || sec.cert == nil {
			c.st.Load().MissingSecret.Inc()
			if sec == nil {
				return nil, fmt.Errorf("%s: certificate secret %q has not been received", c.path, name)
			}
			return nil, fmt.Errorf("%s: secret %q is not a tls_certificate secret", c.path, name)
		}
		list = append(list, sec.cert)
	}
	if len(list) == 1 {
		return list[0], nil
	}
	var fallback *tls.Certificate
	for _, cert := range list {
		if hello.SupportsCertificate(cert) != nil {
			continue
		}
		if hello.ServerName != "" && cert.Leaf != nil && cert.Leaf.VerifyHostname(hello.ServerName) == nil {
			return cert, nil
		}
		if fallback == nil {
			fallback = cert
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return list[0], nil
}

// verifyClient checks the client certificate against the validation
// context: trusted chain (from SDS or inline), then SAN matchers, then
// hash/SPKI pins. It runs on resumed sessions too, so a rotated CA
// applies to them.
func (c *Context) verifyClient(cs tls.ConnectionState) error {
	st := c.st.Load()
	if len(cs.PeerCertificates) == 0 {
		if c.requireClient {
			st.FailVerifyNoCert.Inc()
			return errors.New("a client certificate is required")
		}
		return nil
	}
	roots, checks := c.staticRoots, c.static
	var sdsChecks *peerChecks
	if c.caSecret != "" {
		sec := c.store.get(c.caSecret)
		if sec == nil || sec.roots == nil {
			st.MissingSecret.Inc()
			if sec == nil {
				return fmt.Errorf("%s: validation secret %q has not been received", c.path, c.caSecret)
			}
			return fmt.Errorf("%s: secret %q is not a validation_context secret", c.path, c.caSecret)
		}
		roots, sdsChecks = sec.roots, sec.peer
		if !c.hasStatic {
			checks, sdsChecks = sdsChecks, nil
		}
	}
	leaf := cs.PeerCertificates[0]
	if roots != nil && (checks == nil || !checks.acceptUntrusted) {
		if err := verifyChain(cs.PeerCertificates, roots, checks != nil && checks.allowExpired); err != nil {
			st.FailVerifyError.Inc()
			return err
		}
	}
	for _, pc := range []*peerChecks{checks, sdsChecks} {
		if err := pc.check(leaf); err != nil {
			if errors.Is(err, errVerifySAN) {
				st.FailVerifySAN.Inc()
			} else {
				st.FailVerifyCertHash.Inc()
			}
			return err
		}
	}
	return nil
}
