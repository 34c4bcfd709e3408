package proxy

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// telemetryObserver turns finished requests and connections into Istio's
// standard metrics. The proxy's own peer and its metadata header are
// computed once; callers' peers are decoded once per distinct header value.
type telemetryObserver struct {
	rec        *telemetry.Recorder
	in         *telemetry.Interner
	self       *telemetry.Peer
	peerHeader []byte
	peerID     []byte

	mu    sync.RWMutex
	peers map[string]*telemetry.Peer

	// ownCert returns the proxy's workload certificate (nil without one);
	// its SPIFFE ID is destination_principal on mutual TLS connections.
	ownCert func() *tls.Certificate
	own     atomic.Pointer[ownIdentity]

	// failures, when set, keeps the last failed requests.
	failures *failures.Ring
}

// ownIdentity caches the proxy's peer with its principal for one
// certificate.
type ownIdentity struct {
	cert *tls.Certificate
	peer *telemetry.Peer
}

func newTelemetry(rec *telemetry.Recorder, in *telemetry.Interner, node *corev3.Node) *telemetryObserver {
	t := &telemetryObserver{rec: rec, in: in, peers: map[string]*telemetry.Peer{}}
	p := telemetry.PeerFromMetadata(node.GetMetadata())
	t.self = in.Peer(p)
	if node.GetMetadata() != nil {
		if h, err := telemetry.EncodePeerMetadata(node.GetMetadata()); err == nil {
			t.peerHeader = []byte(h)
			t.peerID = []byte(node.GetId())
		}
	}
	return t
}

const maxPeers = 4096

// peer decodes a caller's metadata header, caching by value.
func (t *telemetryObserver) peer(v []byte) *telemetry.Peer {
	if len(v) == 0 {
		return nil
	}
	t.mu.RLock()
	p, ok := t.peers[string(v)]
	t.mu.RUnlock()
	if ok {
		return p
	}
	md, err := telemetry.DecodePeerMetadata(string(v))
	if err == nil {
		p = t.in.Peer(telemetry.PeerFromMetadata(md))
	}
	t.mu.Lock()
	if len(t.peers) < maxPeers {
		t.peers[string(v)] = p
	}
	t.mu.Unlock()
	return p
}

// selfMTLS is the proxy's own peer with the principal of its current
// workload certificate.
func (t *telemetryObserver) selfMTLS() *telemetry.Peer {
	if t.ownCert == nil {
		return t.self
	}
	c := t.ownCert()
	if c == nil {
		return t.self
	}
	if o := t.own.Load(); o != nil && o.cert == c {
		return o.peer
	}
	p := telemetry.Peer{}
	if t.self != nil {
		p = *t.self
	}
	if c.Leaf != nil {
		for _, u := range c.Leaf.URIs {
			if u.Scheme == "spiffe" {
				p.Principal = u.String()
			}
		}
	}
	o := &ownIdentity{cert: c, peer: t.in.Peer(p)}
	t.own.Store(o)
	return o.peer
}

// withPrincipal is p (nil: unknown) with the principal of its mTLS
// certificate.
func (t *telemetryObserver) withPrincipal(p *telemetry.Peer, principal string) *telemetry.Peer {
	if principal == "" {
		return p
	}
	v := telemetry.Peer{}
	if p != nil {
		v = *p
	}
	v.Principal = principal
	return t.in.Peer(v)
}

// sourceMTLS labels a source-side call to a host reached over mesh mTLS
// with both principals, as Istio: the proxy's own and the one the host's
// certificate presented.
func (t *telemetryObserver) sourceMTLS(k *telemetry.Key, cl *cluster.Cluster, h *lb.Host) {
	p := h.MTLSPrincipal.Load()
	if p == nil || cl == nil || !cl.HostTLS(h) {
		return
	}
	k.Destination = t.withPrincipal(k.Destination, *p)
	k.Source = t.selfMTLS()
}

// Request implements httpconn.Observer.
func (t *telemetryObserver) Request(r *httpconn.Record) {
	if t.failures != nil && failed(r) {
		recordFailure(t.failures, r)
	}
	k := telemetry.Key{Protocol: "http"}
	if r.GRPCStatus >= 0 {
		k.Protocol = "grpc"
	}
	if r.Cluster != nil {
		k.Service = r.Cluster.Service
	}
	if r.Inbound {
		k.Reporter = telemetry.Destination
		k.Destination = t.self
		k.Source = t.peer(r.PeerMetadata)
		k.Security = "none"
		if r.MutualTLS {
			k.Security = "mutual_tls"
			k.Source = t.withPrincipal(k.Source, r.PeerPrincipal)
			k.Destination = t.selfMTLS()
		}
	} else {
		k.Reporter = telemetry.Source
		k.Source = t.self
		if r.Host != nil {
			k.Destination = r.Host.Peer
			t.sourceMTLS(&k, r.Cluster, r.Host)
		}
		k.Security = "unknown"
	}
	if k.Metrics = r.Metrics; k.Metrics.PerRequest() {
		k.Metrics.Fill(&k, recordAttrs{r})
	}
	flags := "-"
	if r.Flags != 0 {
		flags = r.Flags.String()
	}
	t.rec.Request(&k, r.Status, r.GRPCStatus, flags, float64(r.Duration)/float64(time.Millisecond), uint64(r.BytesReceived), uint64(r.BytesSent))
	if r.RequestMessages+r.ResponseMessages > 0 {
		t.rec.GRPCMessages(&k, r.Status, r.GRPCStatus, flags, r.RequestMessages, r.ResponseMessages)
	}
}

// Meter implements tcpproxy.Telemetry. Plaintext TCP carries no peer
// metadata (Istio exchanges it in-band only under mutual TLS, with the
// istio-peer-exchange ALPN), so as in Istio the source side labels the
// destination from the upstream endpoint's metadata and the cluster's
// services, and the destination side reports the source as unknown.
func (t *telemetryObserver) Meter(r *tcpproxy.Record) tcpproxy.Meter {
	k := telemetry.Key{Protocol: "tcp"}
	if r.Cluster != nil {
		k.Service = r.Cluster.Service
	}
	if r.Inbound {
		k.Reporter, k.Destination, k.Security = telemetry.Destination, t.self, "none"
		if r.MutualTLS {
			k.Security = "mutual_tls"
			k.Source = t.withPrincipal(nil, r.PeerPrincipal)
			k.Destination = t.selfMTLS()
		}
	} else {
		k.Reporter, k.Source, k.Security = telemetry.Source, t.self, "unknown"
		if r.Host != nil {
			k.Destination = r.Host.Peer
			t.sourceMTLS(&k, r.Cluster, r.Host)
		}
	}
	if k.Metrics = r.Metrics; k.Metrics.PerRequest() {
		k.Metrics.Fill(&k, nil) // no request attributes: fallbacks or "unknown"
	}
	return tcpMeter{t.rec.TCPConn(&k)}
}

// recordAttrs gives a finished request's attributes to request-valued
// metric tags without copying (a one-pointer struct: no allocation as an
// interface).
type recordAttrs struct{ r *httpconn.Record }

func (a recordAttrs) Header(name string) []byte {
	v, _ := a.r.RequestHeaders.Get(name)
	return v
}
func (a recordAttrs) Method() []byte   { return a.r.Method }
func (a recordAttrs) Path() []byte     { return a.r.Path }
func (a recordAttrs) Host() []byte     { return a.r.Authority }
func (a recordAttrs) Protocol() string { return a.r.Protocol }

// tcpMeter adapts a telemetry.TCPConn to tcpproxy.Meter.
type tcpMeter struct{ c *telemetry.TCPConn }

func (m tcpMeter) Opened()                     { m.c.Opened() }
func (m tcpMeter) Flush(received, sent uint64) { m.c.Bytes(received, sent) }
func (m tcpMeter) Closed(r *tcpproxy.Record, received, sent uint64) {
	m.c.Closed(r.Flags.String(), received, sent)
}
