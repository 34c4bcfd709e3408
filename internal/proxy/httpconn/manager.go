package httpconn

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"golang.org/x/net/http2"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Clusters is the cluster manager as the router sees it: Get returns the
// named cluster or nil. *cluster.Manager satisfies it.
type Clusters interface {
	Get(name string) *cluster.Cluster
}

// Observer receives every finished request (access log, telemetry). The
// Record and everything it points to are only valid during the call.
type Observer interface {
	Request(r *Record)
}

// Record describes one finished request.
type Record struct {
	Start    time.Time
	Duration time.Duration
	// UpstreamDuration is the time to the upstream's response head.
	UpstreamDuration                                            time.Duration
	Method, Path, Authority, UserAgent, RequestID, ForwardedFor []byte
	// Protocol is "HTTP/1.1" or "HTTP/2".
	Protocol string
	Status   int
	// GRPCStatus is the grpc-status of a gRPC response, or -1.
	GRPCStatus    int
	Flags         Flags
	RouteName     string
	Cluster       *cluster.Cluster
	ClusterName   string
	Host          *lb.Host
	Attempts      int
	BytesReceived int64
	BytesSent     int64
	Downstream    net.Addr
	Local         net.Addr
	// RequestHeaders are the request's headers as sent upstream (telemetry
	// reads x-envoy-peer-metadata from them).
	RequestHeaders http1.Headers
	// RequestMessages and ResponseMessages count the gRPC messages of a
	// gRPC request each way (0 otherwise).
	RequestMessages, ResponseMessages uint64
	// StatPrefix is the connection manager's stat_prefix.
	StatPrefix string
	// Inbound is set for the server side's proxy (reporter destination).
	Inbound bool
	// MutualTLS and PeerPrincipal are the downstream connection's client
	// certificate (ConnInfo.Conn's PeerCertificate and PeerPrincipal).
	MutualTLS     bool
	PeerPrincipal string
	// PeerMetadata is the caller's x-envoy-peer-metadata (inbound only).
	PeerMetadata []byte
	// TransportFailure is why the upstream connection failed at the
	// transport (TLS) layer, Envoy's %UPSTREAM_TRANSPORT_FAILURE_REASON%;
	// empty otherwise.
	TransportFailure string
	// Details is the response code details a filter set (an RBAC
	// denial's rbac_access_denied_matched_policy[NAME]); empty otherwise.
	Details string
	// Operation is the selected route's decorator operation (the span
	// name); empty without one.
	Operation string
	// Metrics is the connection manager's stats config (Config.Metrics).
	Metrics *telemetry.Metrics
}

// ConnInfo describes the downstream connection.
type ConnInfo struct {
	Remote, Local net.Addr
	// OriginalDst is the connection's original destination "ip:port" (for
	// ORIGINAL_DST clusters); empty when unknown.
	OriginalDst string
	// TLS reports that the listener terminated TLS on the connection: the
	// request's scheme (and so x-forwarded-proto at the edge) is https.
	TLS bool
	// ALPN is the protocol TLS negotiated ("h2", "http/1.1"), empty
	// without TLS or ALPN. A connection that negotiated h2 is HTTP/2
	// whatever it sends: an invalid preface ends it (RFC 9113 3.4).
	ALPN string
	// Conn is the connection as HTTP filters see it; ServeConn fills in
	// the addresses it leaves unset.
	Conn filter.Conn
}

// Manager serves HTTP connections for every listener of one proxy. Its
// fields are set once before use.
type Manager struct {
	Clusters Clusters
	// Telemetry observes every request (nil: none).
	Telemetry Observer
	// Rand returns uniform random numbers (fault sampling, weighted
	// clusters, request ids, back-off); nil uses math/rand/v2.
	Rand func() uint64
	// Now and Sleep are the clock; nil uses the time package.
	Now   func() time.Time
	Sleep func(time.Duration)
	// PeerMetadata and PeerMetadataID, when set, are sent upstream by
	// outbound connection managers as x-envoy-peer-metadata and
	// x-envoy-peer-metadata-id (Istio's metadata exchange); inbound ones
	// read them into the Record and strip them before the application.
	PeerMetadata, PeerMetadataID []byte
	// Draining reports whether the connection managers of one direction
	// (inbound: the server side) drain: their HTTP/1.1 responses carry
	// "connection: close" and their HTTP/2 responses start a graceful
	// GOAWAY, while the listeners keep accepting. Nil never drains.
	Draining func(inbound bool) bool
	// Debugf, when set, receives the debug log (RBAC decisions).
	Debugf func(format string, args ...any)

	h2once sync.Once
	h2srv  *http2.Server
	// h2base registers h2srv's connections so that GoAway reaches them.
	h2base *http.Server
}

func (m *Manager) rand() uint64 {
	if m.Rand != nil {
		return m.Rand()
	}
	return rand.Uint64()
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) sleep(d time.Duration) {
	if m.Sleep != nil {
		m.Sleep(d)
		return
	}
	time.Sleep(d)
}

func (m *Manager) draining(cfg *Config) bool { return m.Draining != nil && m.Draining(cfg.Inbound) }

// Downstream buffers are small: a larger head is assembled across reads
// (up to http1.MaxHeaderBytes) and bodies bypass them through the copy
// buffer.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// NewReader returns a pooled reader for a downstream connection; give it
// back with PutReader when the connection ends.
func NewReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// PutReader recycles a reader from NewReader.
func PutReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ServeConn serves one downstream connection until it closes or ctx ends.
// br reads from c (it may hold bytes a listener already peeked). cfg is
// the compiled HCM of the matched filter chain.
func (m *Manager) ServeConn(ctx context.Context, cfg *Config, c net.Conn, br *bufio.Reader, info ConnInfo) {
	if info.Remote == nil {
		info.Remote = c.RemoteAddr()
	}
	if info.Local == nil {
		info.Local = c.LocalAddr()
	}
	if !info.Conn.Remote.IsValid() {
		info.Conn.Remote = netAddrPort(info.Remote)
	}
	if !info.Conn.Local.IsValid() {
		info.Conn.Local = netAddrPort(info.Local)
	}
	if cfg.StreamIdleTimeout > 0 {
		c.SetReadDeadline(m.now().Add(cfg.StreamIdleTimeout))
	}
	defer connClosed(cfg.Stats)
	if cfg.Codec == hcmv3.HttpConnectionManager_HTTP2 || (info.ALPN == "h2" && cfg.Codec != hcmv3.HttpConnectionManager_HTTP1) {
		connOpened(cfg.Stats, true)
		c.SetReadDeadline(time.Time{})
		m.serveH2(ctx, cfg, c, br, info)
		return
	}
	if p, err := br.Peek(3); err == nil && string(p) == "PRI" && cfg.Codec != hcmv3.HttpConnectionManager_HTTP1 {
		if p, err := br.Peek(len(h2Preface)); err == nil && string(p) == h2Preface {
			connOpened(cfg.Stats, true)
			c.SetReadDeadline(time.Time{})
			m.serveH2(ctx, cfg, c, br, info)
			return
		}
	}
	connOpened(cfg.Stats, false)
	m.serveH1(ctx, cfg, c, br, info)
}

// the scratch exchange used by route selection helpers.
var _ = route.Request{}

// netAddrPort converts a TCP address; the zero AddrPort otherwise.
func netAddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}
