package pool

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Dialer opens the upstream connections of one cluster. Its fields are set
// before use and never change.
type Dialer struct {
	// Timeout bounds the TCP connect and the TLS handshake (0: only the
	// caller's context).
	Timeout time.Duration
	// Bind is the local source IP ("" for any), e.g. 127.0.0.6 for the
	// inbound passthrough cluster (upstream_bind_config).
	Bind string
	// KeepAlive, when not nil, enables TCP keep-alive probes.
	KeepAlive *net.KeepAliveConfig
	// TLS, when not nil, originates TLS on every connection
	// (transport_socket envoy.transport_sockets.tls); nil is plaintext.
	TLS *tls.Config
	// Dial replaces the TCP dial (tests); nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// TLSError is a failed TLS handshake with the upstream (a connection
// failure whose transport failure reason Envoy reports).
type TLSError struct{ Err error }

func (e *TLSError) Error() string { return "upstream TLS handshake: " + e.Err.Error() }

func (e *TLSError) Unwrap() error { return e.Err }

// DialContext connects to addr and, with TLS set, completes the handshake.
func (d *Dialer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	nc, err := d.dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if d.TLS == nil {
		return nc, nil
	}
	tc := tls.Client(nc, d.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &TLSError{Err: err}
	}
	return tc, nil
}

func (d *Dialer) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if d.Dial != nil {
		return d.Dial(ctx, "tcp", addr)
	}
	nd := net.Dialer{}
	if d.KeepAlive != nil {
		nd.KeepAliveConfig = *d.KeepAlive
	}
	if d.Bind != "" {
		ip := net.ParseIP(d.Bind)
		if ip == nil {
			return nil, &net.AddrError{Err: "invalid bind source", Addr: d.Bind}
		}
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return nd.DialContext(ctx, "tcp", addr)
}
