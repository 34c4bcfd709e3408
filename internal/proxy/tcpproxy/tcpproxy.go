package tcpproxy

import (
	"bufio"
	"context"
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
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
)

// Record describes one finished TCP connection.
type Record struct {
	Start         time.Time
	Duration      time.Duration
	Flags         httpconn.Flags
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
}

// Observer receives finished connections.
type Observer interface {
	Connection(r *Record)
}

// LogCompiler compiles a tcp_proxy's access_log (see httpconn).
type LogCompiler = httpconn.AccessLogCompiler

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
	Clusters httpconn.Clusters
	// Telemetry observes every connection (nil: none).
	Telemetry Observer
	Rand      func() uint64
	Now       func() time.Time
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

// Serve proxies one downstream connection; br holds bytes already read
// from c. It closes c before returning.
func (p *Proxy) Serve(ctx context.Context, cfg *Config, c net.Conn, br *bufio.Reader, originalDst string) {
	rec := Record{Start: p.now(), Downstream: c.RemoteAddr(), Local: c.LocalAddr(), StatPrefix: cfg.StatPrefix, Inbound: cfg.Inbound}
	defer func() {
		c.Close()
		rec.Duration = p.now().Sub(rec.Start)
		if cfg.Log != nil {
			cfg.Log.Connection(&rec)
		}
		if p.Telemetry != nil {
			p.Telemetry.Connection(&rec)
		}
	}()
	rec.ClusterName = cfg.pick(p.rand())
	cl := p.Clusters.Get(rec.ClusterName)
	if cl == nil {
		rec.Flags |= httpconn.FlagNC
		return
	}
	rec.Cluster = cl
	release, ok := cl.TryConnection()
	if !ok {
		rec.Flags |= httpconn.FlagUO
		return
	}
	defer release()
	var up net.Conn
	lbctx := lb.Context{OriginalDst: originalDst}
	for attempt := 1; ; attempt++ {
		h, err := cl.Pick(&lbctx)
		if err != nil || h == nil {
			if errors.Is(err, cluster.ErrNoOriginalDst) {
				rec.Flags |= httpconn.FlagUF
			} else {
				rec.Flags |= httpconn.FlagUH
			}
			return
		}
		rec.Host = h
		up, err = p.dial(ctx, cl, h.Address)
		if err == nil {
			h.CxTotal.Add(1)
			h.CxActive.Add(1)
			defer h.CxActive.Add(-1)
			break
		}
		cl.Report(h, cluster.Outcome{ConnectFailure: true})
		lbctx.Tried = append(lbctx.Tried, h)
		if attempt >= cfg.ConnectAttempts {
			rec.Flags |= httpconn.FlagUF
			if cfg.ConnectAttempts > 1 {
				rec.Flags |= httpconn.FlagURX
			}
			return
		}
	}
	defer up.Close()
	rec.BytesReceived, rec.BytesSent = splice(c, br, up, cfg.IdleTimeout, p.now)
}

// dial connects with the cluster's connect timeout, bind source and TLS
// origination.
func (p *Proxy) dial(ctx context.Context, cl *cluster.Cluster, addr string) (net.Conn, error) {
	if p.Dial != nil {
		if cl.ConnectTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cl.ConnectTimeout)
			defer cancel()
		}
		return p.Dial(ctx, "tcp", addr)
	}
	return cl.DialContext(ctx, addr)
}

// splice copies both ways until both directions finished, passing a
// half-close on; idle closes both after that long without bytes either way.
// It returns the bytes copied downstream->upstream and back.
func splice(down net.Conn, br *bufio.Reader, up net.Conn, idle time.Duration, now func() time.Time) (int64, int64) {
	var last atomic.Int64
	last.Store(now().UnixNano())
	var upBytes int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		upBytes = pump(up, readerOf(down, br), down, idle, &last, now)
	}()
	downBytes := pump(down, up, up, idle, &last, now)
	<-done
	return upBytes, downBytes
}

// readerOf reads the peeked bytes first, then the connection.
func readerOf(c net.Conn, br *bufio.Reader) io.Reader {
	if br == nil || br.Buffered() == 0 {
		return c
	}
	return io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
}

type deadliner interface{ SetReadDeadline(time.Time) error }

// pump copies src to dst; srcConn is where read deadlines apply.
func pump(dst net.Conn, src io.Reader, srcConn deadliner, idle time.Duration, last *atomic.Int64, now func() time.Time) int64 {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var total int64
	for {
		if idle > 0 {
			srcConn.SetReadDeadline(now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			total += int64(n)
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
				return total
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
	return total
}
