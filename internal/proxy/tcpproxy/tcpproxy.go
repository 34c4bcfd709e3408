package tcpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/respflag"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// Record describes one finished TCP connection.
type Record struct {
	Start         time.Time
	Duration      time.Duration
	Flags         respflag.Flags
	ClusterName   string
	Cluster       *cluster.Cluster
	Host          *lb.Host
	BytesReceived int64 // downstream -> upstream
	BytesSent     int64 // upstream -> downstream
	Downstream    net.Addr
	Local         net.Addr
	StatPrefix    string
	// Inbound is set for the server side's proxy.
	Inbound bool
	// MutualTLS reports a downstream client certificate the listener
	// verified; PeerPrincipal is its SPIFFE ID (URI SAN), if any.
	MutualTLS     bool
	PeerPrincipal string
	// Metrics is the listener's stats config (Config.Metrics).
	Metrics *telemetry.Metrics
}

// Observer receives finished connections (access logs).
type Observer interface {
	Connection(r *Record)
}

// Telemetry meters connections while they are open (Istio's istio_tcp_*
// metrics): Meter is called once per downstream connection, when its
// upstream is known.
type Telemetry interface {
	Meter(r *Record) Meter
}

// Meter follows one connection. Its methods are called from one goroutine
// at a time.
type Meter interface {
	// Opened reports that the upstream connection is established.
	Opened()
	// Flush adds the bytes moved since the previous Flush (received:
	// downstream to upstream, sent: upstream to downstream); long
	// connections are flushed every FlushInterval.
	Flush(received, sent uint64)
	// Closed ends the connection with its final record and the bytes since
	// the last Flush. A connection never Opened (no cluster, no healthy
	// host, connect failure) counts as opened and closed at once.
	Closed(r *Record, received, sent uint64)
}

// Clusters is the cluster manager as the TCP proxy sees it: Get returns
// the named cluster or nil. *cluster.Manager satisfies it.
type Clusters interface {
	Get(name string) *cluster.Cluster
}

// Config is a compiled TcpProxy.
type Config struct {
	StatPrefix      string
	clusters        []weighted
	total           uint64
	IdleTimeout     time.Duration
	ConnectAttempts int
	// Log observes connections (nil: none).
	Log Observer
	// Inbound marks the server side (set by the listener compiler).
	Inbound bool
	// Stats are the tcp.STAT_PREFIX.* counters (nil: none; bound by the
	// listener compiler).
	Stats *stats.TCPStats
	// Metrics is the istio.stats network filter's config before this
	// tcp_proxy (nil: Istio's standard metrics; set by the listener
	// compiler).
	Metrics *telemetry.Metrics
}

type weighted struct {
	name   string
	weight uint64
}

// Compile compiles p; path names the field in errors.
func Compile(p *tcpv3.TcpProxy, logs func(p *tcpv3.TcpProxy, path string) (Observer, error), path string) (*Config, error) {
	c := &Config{StatPrefix: p.GetStatPrefix(), IdleTimeout: time.Hour, ConnectAttempts: 1}
	switch cs := p.GetClusterSpecifier().(type) {
	case *tcpv3.TcpProxy_Cluster:
		if cs.Cluster == "" {
			return nil, fmt.Errorf("%s.cluster: must not be empty", path)
		}
		c.clusters = []weighted{{cs.Cluster, 1}}
		c.total = 1
	case *tcpv3.TcpProxy_WeightedClusters:
		for i, w := range cs.WeightedClusters.GetClusters() {
			if w.GetName() == "" {
				return nil, fmt.Errorf("%s.weighted_clusters.clusters[%d].name: must not be empty", path, i)
			}
			c.clusters = append(c.clusters, weighted{w.GetName(), uint64(w.GetWeight())})
			c.total += uint64(w.GetWeight())
		}
		if c.total == 0 {
			return nil, fmt.Errorf("%s.weighted_clusters: the weights sum to 0", path)
		}
	default:
		return nil, fmt.Errorf("%s: set cluster or weighted_clusters", path)
	}
	if t := p.GetIdleTimeout(); t != nil {
		c.IdleTimeout = t.AsDuration()
	}
	if n := p.GetMaxConnectAttempts(); n != nil {
		if n.GetValue() < 1 {
			return nil, fmt.Errorf("%s.max_connect_attempts: must be at least 1", path)
		}
		c.ConnectAttempts = int(n.GetValue())
	}
	if p.GetTunnelingConfig() != nil {
		return nil, fmt.Errorf("%s.tunneling_config: not supported", path)
	}
	if len(p.GetAccessLog()) > 0 {
		if logs == nil {
			return nil, fmt.Errorf("%s.access_log: no access logger is available", path)
		}
		o, err := logs(p, path+".access_log")
		if err != nil {
			return nil, err
		}
		c.Log = o
	}
	return c, nil
}

// pick chooses a cluster name with the random number r.
func (c *Config) pick(r uint64) string {
	if len(c.clusters) == 1 {
		return c.clusters[0].name
	}
	x := r % c.total
	for _, w := range c.clusters {
		if x < w.weight {
			return w.name
		}
		x -= w.weight
	}
	return c.clusters[len(c.clusters)-1].name
}

// Proxy serves TCP connections for every tcp_proxy of one proxy.
type Proxy struct {
	Clusters Clusters
	// Telemetry meters every connection (nil: none).
	Telemetry Telemetry
	// FlushInterval is how often the bytes of a live connection are
	// reported to Telemetry (default 5 s); they are always reported at the
	// close.
	FlushInterval time.Duration
	Rand          func() uint64
	Now           func() time.Time
	// Dial connects upstream; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (p *Proxy) rand() uint64 {
	if p.Rand != nil {
		return p.Rand()
	}
	return rand.Uint64()
}

func (p *Proxy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// DefaultFlushInterval is how often a live connection's bytes reach
// telemetry when FlushInterval is not set.
const DefaultFlushInterval = 5 * time.Second

// Serve proxies one downstream connection; br holds bytes already read
// from c. It closes c before returning.
func (p *Proxy) Serve(ctx context.Context, cfg *Config, c net.Conn, br *bufio.Reader, originalDst string) {
	rec := Record{Start: p.now(), Downstream: c.RemoteAddr(), Local: c.LocalAddr(), StatPrefix: cfg.StatPrefix, Inbound: cfg.Inbound, Metrics: cfg.Metrics}
	if tc, ok := c.(*tls.Conn); ok {
		rec.MutualTLS, rec.PeerPrincipal = PeerIdentity(tc.ConnectionState())
	}
	var cnt counts
	if cfg.Stats != nil {
		cfg.Stats.DownstreamCxTotal.Inc()
		cnt.rxTotal, cnt.txTotal = cfg.Stats.DownstreamCxRxBytesTotal, cfg.Stats.DownstreamCxTxBytesTotal
	}
	var fl *flusher
	defer func() {
		c.Close()
		rec.Duration = p.now().Sub(rec.Start)
		rec.BytesReceived, rec.BytesSent = cnt.rx.Load(), cnt.tx.Load()
		if cfg.Log != nil {
			cfg.Log.Connection(&rec)
		}
		if fl != nil {
			fl.close(&rec)
		} else if p.Telemetry != nil {
			p.Telemetry.Meter(&rec).Closed(&rec, uint64(rec.BytesReceived), uint64(rec.BytesSent))
		}
	}()
	rec.ClusterName = cfg.pick(p.rand())
	cl := p.Clusters.Get(rec.ClusterName)
	if cl == nil {
		rec.Flags |= respflag.NC
		if cfg.Stats != nil {
			cfg.Stats.DownstreamCxNoRoute.Inc()
		}
		return
	}
	rec.Cluster = cl
	release, ok := cl.TryConnection()
	if !ok {
		rec.Flags |= respflag.UO
		return
	}
	defer release()
	var up net.Conn
	lbctx := lb.Context{OriginalDst: originalDst}
	for attempt := 1; ; attempt++ {
		h, err := cl.Pick(&lbctx)
		if err != nil || h == nil {
			if errors.Is(err, cluster.ErrNoOriginalDst) {
				rec.Flags |= respflag.UF
			} else {
				rec.Flags |= respflag.UH
			}
			return
		}
		rec.Host = h
		up, err = p.dial(ctx, cl, h)
		if err == nil {
			h.CxTotal.Add(1)
			h.CxActive.Add(1)
			defer h.CxActive.Add(-1)
			// The cluster's upstream_cx_total/active count tcp_proxy's
			// connections too, as in Envoy (an east-west gateway's SNI
			// clusters carry nothing else).
			if st := cl.Stats; st != nil {
				st.UpstreamCxTotal.Inc()
				st.UpstreamCxActive.Inc()
				defer st.UpstreamCxActive.Dec()
			}
			break
		}
		cl.Report(h, cluster.Outcome{ConnectFailure: true})
		lbctx.Tried = append(lbctx.Tried, h)
		if attempt >= cfg.ConnectAttempts {
			rec.Flags |= respflag.UF
			if cfg.ConnectAttempts > 1 {
				rec.Flags |= respflag.URX
			}
			return
		}
	}
	defer up.Close()
	if p.Telemetry != nil {
		fl = p.startFlusher(&rec, &cnt)
	}
	if idle := splice(c, br, up, cfg.IdleTimeout, p.now, &cnt); idle && cfg.Stats != nil {
		cfg.Stats.IdleTimeout.Inc()
	}
}

// dial connects with the cluster's connect timeout, bind source and TLS
// origination.
func (p *Proxy) dial(ctx context.Context, cl *cluster.Cluster, h *cluster.Host) (net.Conn, error) {
	if p.Dial != nil {
		if cl.ConnectTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cl.ConnectTimeout)
			defer cancel()
		}
		return p.Dial(ctx, "tcp", h.Address)
	}
	return cl.DialHost(ctx, h)
}

// splice copies both ways until both directions finished, passing a
// half-close on; idle closes both after that long without bytes either way.
// It counts the bytes into cnt as they flow and reports whether the idle
// timeout closed the connection.
func splice(down net.Conn, br *bufio.Reader, up net.Conn, idle time.Duration, now func() time.Time, cnt *counts) bool {
	var last atomic.Int64
	last.Store(now().UnixNano())
	var upIdle bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		upIdle = pump(up, readerOf(down, br), down, idle, &last, now, &cnt.rx, cnt.rxTotal)
	}()
	downIdle := pump(down, up, up, idle, &last, now, &cnt.tx, cnt.txTotal)
	<-done
	return upIdle || downIdle
}

// readerOf reads the peeked bytes first, then the connection.
func readerOf(c net.Conn, br *bufio.Reader) io.Reader {
	if br == nil || br.Buffered() == 0 {
		return c
	}
	return io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
}

type deadliner interface{ SetReadDeadline(time.Time) error }

// pump copies src to dst; srcConn is where read deadlines apply. Every
// write adds to n (and total, when set). It reports whether it stopped for
// the idle timeout.
func pump(dst net.Conn, src io.Reader, srcConn deadliner, idle time.Duration, last *atomic.Int64, now func() time.Time, n *atomic.Int64, total *stats.Counter) bool {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	for {
		if idle > 0 {
			srcConn.SetReadDeadline(now().Add(idle))
		}
		k, err := src.Read(buf)
		if k > 0 {
			last.Store(now().UnixNano())
			if _, werr := dst.Write(buf[:k]); werr != nil {
				break
			}
			n.Add(int64(k))
			if total != nil {
				total.Add(uint64(k))
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Idle only if the other direction was idle too.
				if now().Sub(time.Unix(0, last.Load())) < idle {
					continue
				}
				dst.Close()
				if c, ok := srcConn.(net.Conn); ok {
					c.Close()
				}
				return true
			}
			break
		}
	}
	// EOF (or error) from src: pass the half-close on.
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
	return false
}

// ClusterNames returns the clusters c sends connections to.
func (c *Config) ClusterNames() []string {
	out := make([]string, len(c.clusters))
	for i, w := range c.clusters {
		out[i] = w.name
	}
	return out
}

// PeerIdentity reports whether the TLS peer presented a verified
// certificate (mutual TLS) and its SPIFFE ID, the first spiffe:// URI SAN.
func PeerIdentity(cs tls.ConnectionState) (mutual bool, principal string) {
	if len(cs.PeerCertificates) == 0 {
		return false, ""
	}
	for _, u := range cs.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return true, u.String()
		}
	}
	return true, ""
}
