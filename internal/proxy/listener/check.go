package listener

import (
	"net/netip"
	"strconv"

	httpfilter "github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// CheckRequest describes a connection and, optionally, an HTTP request on
// it, for Listener.CheckRBAC.
type CheckRequest struct {
	// Conn is the connection: Remote the source, Local the destination;
	// SNI, PeerCertificate and PeerPrincipal as a TLS handshake would
	// set them.
	Conn httpfilter.Conn
	// ALPN is what the client offers; empty means the listener's sniffing
	// would see: istio ALPN for a TLS peer with a certificate, http/1.1
	// for plain text.
	ALPN []string
	// Request is the HTTP request; an HTTP chain checks it (a TCP chain
	// ignores it).
	Request route.Request
}

// CheckResult is what the listener's authorization decides for a
// CheckRequest.
type CheckResult struct {
	// Chain is the filter chain the connection matches; nil when none
	// does (the proxy closes the connection).
	Chain *Chain
	// Network are the network RBAC filters' verdicts (the chain's
	// Chain.RBAC, in order, up to the first denial).
	Network []httpfilter.RBACVerdict
	// HTTP is the HTTP chain's check; nil for a TCP chain or after a
	// network denial.
	HTTP *httpconn.RBACCheck
}

// inboundALPN is what an Istio client sidecar offers over mesh mTLS.
var inboundALPN = []string{"istio-http/1.1", "istio", "http/1.1"}

// CheckRBAC selects the filter chain for a described connection as serve
// does (Match on the same facts) and runs its network RBAC and, for an
// HTTP chain, the request through the connection manager's RBAC filters:
// the compiled config new connections get, evaluated by the code that
// serves them.
func (l *Listener) CheckRBAC(q CheckRequest) CheckResult {
	f := ConnFacts{
		DstIP: q.Conn.Local.Addr().Unmap(), DstPort: uint32(q.Conn.Local.Port()),
		SrcIP: q.Conn.Remote.Addr().Unmap(), SrcPort: uint32(q.Conn.Remote.Port()),
		Sniffed: true, ServerName: q.Conn.SNI, Transport: "raw_buffer", ALPN: q.ALPN,
	}
	if q.Conn.PeerCertificate || q.Conn.SNI != "" {
		f.Transport = "tls"
		if len(f.ALPN) == 0 {
			f.ALPN = inboundALPN
		}
	} else if len(f.ALPN) == 0 {
		f.ALPN = []string{"http/1.1"}
	}
	var out CheckResult
	c := l.Match(&f)
	if c == nil {
		return out
	}
	out.Chain = c
	conn := q.Conn
	conn.Remote = netip.AddrPortFrom(f.SrcIP, uint16(f.SrcPort))
	conn.Local = netip.AddrPortFrom(f.DstIP, uint16(f.DstPort))
	if c.TLS == nil {
		// A plain-text chain authenticates no peer.
		conn.PeerCertificate, conn.PeerPrincipal, conn.SNI = false, "", ""
	}
	for i, rules := range c.RBAC {
		allowed, p := rules.EvaluateConn(&conn)
		v := httpfilter.RBACVerdict{Filter: NetworkRBACName(i, len(c.RBAC)), Enforced: true}
		v.Action, v.Allowed, v.Policy = rules.Action, allowed, p
		out.Network = append(out.Network, v)
		if !allowed {
			return out
		}
	}
	if c.HTTP != nil {
		h := c.HTTP.CheckRBAC(q.Request, conn)
		out.HTTP = &h
	}
	return out
}

// NetworkRBACName names the i-th of n network RBAC filters of a chain.
func NetworkRBACName(i, n int) string {
	if n == 1 {
		return RBACFilter
	}
	return RBACFilter + "[" + strconv.Itoa(i) + "]"
}
