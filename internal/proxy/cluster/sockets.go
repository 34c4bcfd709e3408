package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/proxy/pool"
)

// TransportSocketMatchKey is the endpoint metadata namespace that
// transport_socket_matches compare against (Istio sets tlsMode: istio
// there for endpoints with a sidecar).
const TransportSocketMatchKey = "envoy.transport_socket_match"

// socketMatch is one compiled transport_socket_matches entry: endpoints
// whose match metadata holds every key/value of match get tls (nil:
// plaintext).
type socketMatch struct {
	name   string
	match  map[string]string
	tls    *tls.Config
	dialer pool.Dialer
	// needsCert is the SDS client certificate the match's TLS presents
	// (auto mTLS: `default`); while the proxy holds no such certificate
	// the match is passed over, so a proxy without a workload identity
	// talks plaintext (which a STRICT server refuses) instead of failing
	// every handshake.
	needsCert string
	secrets   SecretSource
}

func (m *socketMatch) matches(md map[string]string) bool {
	for k, v := range m.match {
		if md[k] != v {
			return false
		}
	}
	return true
}

// compileTransport compiles one transport socket: TLS origination, or nil
// for none / raw_buffer.
func compileTransport(ts *corev3.TransportSocket, p string, secrets SecretSource, fe *fieldErrors) *tls.Config {
	if ts == nil || ts.GetName() == "envoy.transport_sockets.raw_buffer" {
		return nil
	}
	if ts.GetName() != tlsTransportSocket {
		fe.add(p, "transport socket %q is not supported; use %s or raw_buffer", ts.GetName(), tlsTransportSocket)
		return nil
	}
	return compileUpstreamTLS(ts, p, secrets, fe)
}

// compileSocketMatches compiles transport_socket_matches, first match
// wins, as Envoy.
func compileSocketMatches(pc *clusterv3.Cluster, secrets SecretSource, fe *fieldErrors) []socketMatch {
	var out []socketMatch
	for i, m := range pc.GetTransportSocketMatches() {
		p := fmt.Sprintf("transport_socket_matches[%d]", i)
		sm := socketMatch{name: m.GetName(), match: map[string]string{}}
		for k, v := range m.GetMatch().GetFields() {
			sv, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				fe.add(p+".match."+k, "only string values are supported")
				continue
			}
			sm.match[k] = sv.StringValue
		}
		sm.tls = compileTransport(m.GetTransportSocket(), p+".transport_socket", secrets, fe)
		if sm.tls != nil && sm.tls.GetClientCertificate != nil {
			sm.needsCert, sm.secrets = ownCertSecret, secrets
		}
		out = append(out, sm)
	}
	return out
}

// matchMetadata reads an endpoint's transport socket match metadata.
func matchMetadata(md *corev3.Metadata) map[string]string {
	f := md.GetFilterMetadata()[TransportSocketMatchKey].GetFields()
	if len(f) == 0 {
		return nil
	}
	out := make(map[string]string, len(f))
	for k, v := range f {
		out[k] = v.GetStringValue()
	}
	return out
}

// dialerFor is the dialer for h's connections: the first transport
// socket match for its metadata, else the cluster's transport socket.
func (c *Cluster) dialerFor(h *Host) *pool.Dialer {
	if len(c.sockets) == 0 || h == nil {
		return &c.dialer
	}
	for i := range c.sockets {
		m := &c.sockets[i]
		if m.matches(h.TransportMatch) && (m.needsCert == "" || m.secrets.Certificate(m.needsCert) != nil) {
			return &m.dialer
		}
	}
	return &c.dialer
}

// HostTLS reports whether connections to h originate TLS.
func (c *Cluster) HostTLS(h *Host) bool { return c.dialerFor(h).TLS != nil }

// DialHost connects to h with the cluster's connect timeout, bind source,
// keep-alive and the host's transport socket (what the TCP proxy uses).
func (c *Cluster) DialHost(ctx context.Context, h *Host) (net.Conn, error) {
	conn, err := c.dialerFor(h).DialContext(ctx, h.Address)
	if err == nil {
		notePeer(h, conn)
	}
	return conn, err
}

// notePeer records the SPIFFE ID a new TLS connection to h presented.
func notePeer(h *Host, conn net.Conn) {
	tc, ok := conn.(*tls.Conn)
	if !ok || h == nil {
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return
	}
	for _, u := range cs.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			if p := h.MTLSPrincipal.Load(); p == nil || *p != u.String() {
				id := u.String()
				h.MTLSPrincipal.Store(&id)
			}
			return
		}
	}
}

// hostAt is the host with address addr, or nil.
func (c *Cluster) hostAt(addr string) *Host {
	for _, h := range c.Hosts() {
		if h.Address == addr {
			return h
		}
	}
	return nil
}

// dialerForAddr is dialerFor for the host at addr (HTTP/2 connections are
// made by address).
func (c *Cluster) dialerForAddr(addr string) *pool.Dialer {
	if len(c.sockets) == 0 {
		return &c.dialer
	}
	if h := c.hostAt(addr); h != nil {
		return c.dialerFor(h)
	}
	return &c.dialer
}
