package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/healthcheck"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// ErrNoHealthyUpstream means the cluster has no host to send to (the data
// path answers 503 with response flag UH).
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// ErrNoOriginalDst means an ORIGINAL_DST cluster was picked without an
// original destination address.
var ErrNoOriginalDst = errors.New("original destination cluster needs the connection's original destination")

// Host is an upstream endpoint (see package lb).
type Host = lb.Host

// Type is a cluster's discovery type.
type Type int

// Discovery types.
const (
	TypeStatic Type = iota
	TypeStrictDNS
	TypeLogicalDNS
	TypeEDS
	TypeOriginalDst
)

// String returns Envoy's name for the type.
func (t Type) String() string {
	switch t {
	case TypeStrictDNS:
		return "STRICT_DNS"
	case TypeLogicalDNS:
		return "LOGICAL_DNS"
	case TypeEDS:
		return "EDS"
	case TypeOriginalDst:
		return "ORIGINAL_DST"
	}
	return "STATIC"
}

// Outcome is what one attempt to a host produced, as reported by the data
// path after the attempt.
type Outcome struct {
	// Status is the upstream's HTTP status (0 for TCP or when none came back).
	Status int
	// ConnectFailure, Timeout and Reset are local-origin failures.
	ConnectFailure, Timeout, Reset bool
	// Duration, when set, is the attempt's time to the response (observed
	// as upstream_rq_time).
	Duration time.Duration
}

// Thresholds are the cluster's circuit breakers (thresholds[0]); zero
// fields were filled with Envoy's defaults (1024, 1024, 1024, 3).
type Thresholds struct {
	MaxConnections, MaxPendingRequests, MaxRequests, MaxRetries uint32
}

type breaker struct {
	max      int64
	cur      atomic.Int64
	overflow *stats.Counter
	open     *stats.Gauge
	release  func()
}

func newBreaker(max uint32, overflow *stats.Counter, open *stats.Gauge) *breaker {
	b := &breaker{max: int64(max), overflow: overflow, open: open}
	b.release = func() {
		if b.cur.Add(-1) == b.max-1 {
			b.open.Set(0)
		}
	}
	return b
}

// takeOK takes a slot without counting an overflow; the caller frees it
// with release.
func (b *breaker) takeOK() bool {
	if n := b.cur.Add(1); n > b.max {
		b.cur.Add(-1)
		return false
	}
	return true
}

// force takes a slot even past the limit.
func (b *breaker) force() {
	if b.cur.Add(1) >= b.max {
		b.open.Set(1)
	}
}

// overflowed counts one overflow.
func (b *breaker) overflowed() {
	b.overflow.Inc()
	b.open.Set(1)
}

func (b *breaker) try() (func(), bool) {
	if n := b.cur.Add(1); n > b.max {
		b.cur.Add(-1)
		b.overflow.Inc()
		b.open.Set(1)
		return nil, false
	}
	return b.release, true
}

// Cluster is one compiled cluster. Its exported fields never change after
// compilation; its hosts are swapped atomically on EDS/DNS updates.
type Cluster struct {
	Name string
	Type Type
	// EDSServiceName is the name of the ClusterLoadAssignment for EDS clusters.
	EDSServiceName string
	// ConnectTimeout for upstream connections (default 5s).
	ConnectTimeout time.Duration
	// HTTP2 means upstream HTTP uses HTTP/2 (h2c without TLS).
	HTTP2 bool
	// UseDownstreamProtocol means upstream HTTP follows the downstream's
	// protocol (use_downstream_protocol_config).
	UseDownstreamProtocol bool
	// IdleTimeout closes idle upstream connections (0 = Envoy's 1h default applies).
	IdleTimeout time.Duration
	// MaxRequestsPerConnection closes a connection after that many requests (0 = unlimited).
	MaxRequestsPerConnection uint32
	// OriginalDst is set for ORIGINAL_DST clusters: Pick connects to the
	// connection's original destination.
	OriginalDst bool
	// UpstreamBindSource is the local source address for upstream
	// connections ("127.0.0.6" for InboundPassthroughCluster), or empty.
	UpstreamBindSource string
	// TLS, when not nil, is the client TLS config for upstream connections
	// (transport_socket envoy.transport_sockets.tls); nil means plaintext.
	TLS *tls.Config
	// TCPKeepalive, when not nil, enables keep-alive probes on upstream
	// connections (upstream_connection_options.tcp_keepalive).
	TCPKeepalive *net.KeepAliveConfig
	// MaxConnectionDuration closes upstream connections after this long (0 = never).
	MaxConnectionDuration time.Duration
	// Service is the destination service from metadata filter_metadata
	// ["istio"].services[0], nil when absent (telemetry says "unknown").
	Service *telemetry.Service
	// Subset is filter_metadata["istio"].subset.
	Subset string
	// LB is the load-balancer configuration.
	LB lb.Config
	// Breakers are the circuit-breaker thresholds.
	Breakers Thresholds
	// Reasons are the response code details of the failures naming this
	// cluster, built once with it.
	Reasons respdetail.Cluster
	// Stats are this cluster's pre-bound counters.
	Stats *Stats

	proto      *clusterv3.Cluster
	outlier    *outlier.Detector
	outlierCfg *outlier.Config
	hcConfig   *healthcheck.Config
	hc         *healthcheck.Checker
	dnsRate    time.Duration
	dnsFamily  string                            // "ip", "ip4" or "ip6" (dns_lookup_family)
	static     *endpointv3.ClusterLoadAssignment // STATIC/STRICT_DNS load_assignment

	bal       atomic.Pointer[lb.Balancer]
	cla       atomic.Pointer[endpointv3.ClusterLoadAssignment]
	warm      atomic.Bool
	updatedAt atomic.Int64 // unix nanos of the last host update

	cx, pending, rq, retry *breaker

	dialer    pool.Dialer
	sockets   []socketMatch // transport_socket_matches; empty: every host uses dialer
	waiting   pendingQueue
	releaseCx func() // frees a connection slot and wakes the pending queue
	h2once    sync.Once
	h2        *http.Transport
	now       func() time.Time

	origMu   sync.Mutex
	origDst  atomic.Pointer[map[string]*Host]
	stop     context.CancelFunc
	interner *telemetry.Interner
	added    time.Time
}

// Proto returns the cluster as received (for /config_dump). It must not be changed.
func (c *Cluster) Proto() *clusterv3.Cluster { return c.proto }

// LoadAssignment returns the endpoints currently applied (EDS, or the
// static load_assignment), or nil.
func (c *Cluster) LoadAssignment() *endpointv3.ClusterLoadAssignment { return c.cla.Load() }

// Warm reports whether the cluster has its endpoints (EDS clusters are cold
// until their first assignment arrives; every other type is warm at once).
func (c *Cluster) Warm() bool { return c.warm.Load() }

// Hosts returns the current hosts (all of them, healthy or not).
func (c *Cluster) Hosts() []*Host {
	if c.OriginalDst {
		m := c.origDst.Load()
		if m == nil {
			return nil
		}
		out := make([]*Host, 0, len(*m))
		for _, h := range *m {
			out = append(out, h)
		}
		return out
	}
	if b := c.bal.Load(); b != nil {
		return b.Hosts()
	}
	return nil
}

// Outlier returns the cluster's outlier detector, or nil.
func (c *Cluster) Outlier() *outlier.Detector { return c.outlier }

// Pick returns the host for one attempt. ctx may be nil.
func (c *Cluster) Pick(ctx *lb.Context) (*Host, error) {
	if c.OriginalDst {
		if ctx == nil || ctx.OriginalDst == "" {
			return nil, ErrNoOriginalDst
		}
		return c.originalDstHost(ctx.OriginalDst), nil
	}
	b := c.bal.Load()
	if b == nil {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil, ErrNoHealthyUpstream
	}
	h := b.Pick(ctx)
	if h == nil {
		c.Stats.UpstreamCxNoneHealthy.Inc()
		return nil, ErrNoHealthyUpstream
	}
	return h, nil
}

func (c *Cluster) originalDstHost(addr string) *Host {
	if m := c.origDst.Load(); m != nil {
		if h, ok := (*m)[addr]; ok {
			return h
		}
	}
	c.origMu.Lock()
	defer c.origMu.Unlock()
	old := c.origDst.Load()
	if old != nil {
		if h, ok := (*old)[addr]; ok {
			return h
		}
	}
	// Copy-on-write. The map is bounded: past maxOriginalDstHosts, hosts
	// without requests or connections in flight are dropped (Envoy cleans
	// idle ones on a timer).
	n := make(map[string]*Host, 8)
	if old != nil {
		full := len(*old) >= maxOriginalDstHosts
		for k, v := range *old {
			if !full || v.ActiveRequests() > 0 || v.CxActive.Load() > 0 {
				n[k] = v
			}
		}
	}
	h := &Host{Address: addr, Weight: 1}
	n[addr] = h
	c.origDst.Store(&n)
	return h
}

const maxOriginalDstHosts = 4096

// TryConnection takes a connection slot (max_connections) for a
// connection the caller opens itself (the TCP proxy). On success the
// caller must call release when the connection closes; on overflow
// upstream_cx_overflow counts and ok is false. HTTP connections take
// theirs in Conn and H2Conn.
func (c *Cluster) TryConnection() (release func(), ok bool) {
	if _, ok := c.cx.try(); !ok {
		return nil, false
	}
	return c.releaseCx, true
}

// TryRequest takes an active-request slot (max_requests); overflow counts
// upstream_rq_pending_overflow as Envoy does for HTTP/1 and the data path
// answers 503 UO.
func (c *Cluster) TryRequest() (release func(), ok bool) { return c.rq.try() }

// TryRetry takes a retry slot (max_retries); overflow counts
// upstream_rq_retry_overflow and the retry is not made.
func (c *Cluster) TryRetry() (release func(), ok bool) {
	rel, ok := c.retry.try()
	if ok {
		c.Stats.UpstreamRqRetry.Inc()
	}
	return rel, ok
}

// Report records one attempt's outcome: cluster counters
// (upstream_rq_total, upstream_rq_Nxx, upstream_rq_CODE, upstream_rq_timeout,
// upstream_cx_connect_fail), the host's counters, and outlier detection.
// It does not allocate.
func (c *Cluster) Report(h *Host, o Outcome) {
	s := c.Stats
	s.UpstreamRqTotal.Inc()
	if h != nil {
		switch {
		case o.Status >= 500 || o.ConnectFailure || o.Timeout || o.Reset:
			h.RqError.Add(1)
		case o.Status > 0:
			h.RqSuccess.Add(1)
		}
		if o.Timeout {
			h.RqTimeout.Add(1)
		}
		if o.ConnectFailure {
			h.CxFailed.Add(1)
		}
	}
	if o.Status > 0 {
		s.code(o.Status).Inc()
		s.UpstreamRqCompleted.Inc()
	}
	if o.Duration > 0 {
		s.UpstreamRqTime.Observe(float64(o.Duration) / float64(time.Millisecond))
	}
	if o.Timeout {
		s.UpstreamRqTimeout.Inc()
	}
	if o.ConnectFailure {
		s.UpstreamCxConnectFail.Inc()
	}
	if o.Reset {
		s.UpstreamRqRxReset.Inc()
	}
	if c.outlier != nil && h != nil {
		c.outlier.Report(h, outlier.Result{Status: o.Status, ConnectFailure: o.ConnectFailure, Timeout: o.Timeout, Reset: o.Reset})
	}
}

// refresh rebuilds the balancer's healthy view after a health change.
func (c *Cluster) refresh() {
	if b := c.bal.Load(); b != nil {
		b.Refresh()
		c.Stats.MembershipHealthy.Set(int64(b.HealthyCount()))
	}
}

// setHosts publishes a new host list (already compiled).
func (c *Cluster) setHosts(hosts []*Host, cla *endpointv3.ClusterLoadAssignment, now time.Time) {
	if c.outlier != nil {
		c.outlier.SetHosts(hosts)
	}
	if c.hc != nil {
		c.hc.SetHosts(hosts)
	}
	if old := c.bal.Load(); old != nil {
		// Hosts that left keep no connections.
		kept := make(map[*Host]bool, len(hosts))
		for _, h := range hosts {
			kept[h] = true
		}
		for _, h := range old.Hosts() {
			if !kept[h] {
				h.Conns.Close()
			}
		}
	}
	b := lb.New(c.LB, hosts)
	c.bal.Store(b)
	c.cla.Store(cla)
	c.updatedAt.Store(now.UnixNano())
	c.warm.Store(true)
	c.Stats.MembershipTotal.Set(int64(len(hosts)))
	c.Stats.MembershipHealthy.Set(int64(b.HealthyCount()))
	c.Stats.MembershipChange.Inc()
}

// LastUpdated returns when the hosts last changed (zero if never).
func (c *Cluster) LastUpdated() time.Time {
	n := c.updatedAt.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// AddedAt returns when this compiled cluster was published.
func (c *Cluster) AddedAt() time.Time { return c.added }
