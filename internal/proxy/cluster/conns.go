package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/pool"
)

// ErrPendingOverflow means a request found max_connections reached and
// the pending queue (max_pending_requests) full: the data path answers
// 503 with response flag UO.
var ErrPendingOverflow = errors.New("upstream pending request overflow")

// ErrPendingTimeout means a request's deadline passed while it waited in
// the pending queue for a connection.
var ErrPendingTimeout = errors.New("upstream request timed out waiting for a connection")

// errHostRemoved means the host left the cluster while a connection to it
// was being made.
var errHostRemoved = errors.New("upstream host left its cluster")

// defaultIdleTimeout is Envoy's common_http_protocol_options.idle_timeout
// default.
const defaultIdleTimeout = time.Hour

// pendingQueue is where requests wait when max_connections is reached
// (Envoy's pending requests). Waiters are woken whenever a connection is
// freed or returned idle; they then look again. The counter keeps the
// common case (nobody waits) free of locks.
type pendingQueue struct {
	n  atomic.Int32
	mu sync.Mutex
	ch chan struct{}
}

// signal returns the channel closed at the next wake.
func (q *pendingQueue) signal() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ch == nil {
		q.ch = make(chan struct{})
	}
	return q.ch
}

func (q *pendingQueue) wake() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	if q.ch != nil {
		close(q.ch)
		q.ch = nil
	}
	q.mu.Unlock()
}

// DialContext connects to addr with the cluster's connect timeout, bind
// source, keep-alive and TLS origination (what the TCP proxy uses).
func (c *Cluster) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	return c.dialer.DialContext(ctx, addr)
}

// Conn returns an HTTP/1.1 connection to h for one request: an idle one
// of the host's (unless fresh), else a new one within max_connections.
// At max_connections the request waits in the pending queue, bounded by
// max_pending_requests (ErrPendingOverflow past it) and by deadline
// (ErrPendingTimeout). The caller owns the connection until it gives it to
// Release or closes it.
func (c *Cluster) Conn(h *Host, fresh bool, deadline time.Time) (*pool.Conn, error) {
	var q queued
	defer c.leave(&q)
	for {
		var wake <-chan struct{}
		if q.in() {
			wake = c.waiting.signal()
		}
		if !fresh {
			if pc := h.Conns.Take(c.now(), c.idleTimeout(), c.MaxConnectionDuration); pc != nil {
				return pc, nil
			}
		}
		if c.cx.takeOK() {
			return c.dialH1(h, deadline)
		}
		if h.CxActive.Load() == 0 {
			// Other hosts hold every slot and this one has no connection
			// to wait for: open one anyway, as Envoy does, so that the
			// request is not queued with no way to be served.
			c.cx.overflowed()
			c.cx.force()
			return c.dialH1(h, deadline)
		}
		if !q.in() {
			if !c.join(&q) {
				return nil, ErrPendingOverflow
			}
			continue // look again now that a wake cannot be missed
		}
		if err := c.wait(wake, deadline); err != nil {
			return nil, err
		}
		fresh = false
	}
}

// queued is one request's place in the pending queue; the zero value has
// none.
type queued struct{ release func() }

func (q *queued) in() bool { return q.release != nil }

// join takes a place in the pending queue (max_connections was reached);
// it reports false past max_pending_requests.
func (c *Cluster) join(q *queued) bool {
	c.cx.overflowed()
	rel, ok := c.pending.try()
	if !ok {
		return false
	}
	q.release = rel
	c.waiting.n.Add(1)
	c.Stats.UpstreamRqPendingTotal.Inc()
	c.Stats.UpstreamRqPendingActive.Inc()
	return true
}

// leave gives q's place back, if it has one.
func (c *Cluster) leave(q *queued) {
	if q.release != nil {
		q.release()
		q.release = nil
		c.waiting.n.Add(-1)
		c.Stats.UpstreamRqPendingActive.Dec()
	}
}

func (c *Cluster) wait(wake <-chan struct{}, deadline time.Time) error {
	if deadline.IsZero() {
		<-wake
		return nil
	}
	d := deadline.Sub(c.now())
	if d <= 0 {
		return ErrPendingTimeout
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-wake:
		return nil
	case <-t.C:
		return ErrPendingTimeout
	}
}

// dialH1 opens a connection in a slot already taken.
func (c *Cluster) dialH1(h *Host, deadline time.Time) (*pool.Conn, error) {
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	h.CxActive.Add(1) // a connection being made counts as one
	nc, err := c.dialerFor(h).DialContext(ctx, h.Address)
	if err != nil {
		h.CxActive.Add(-1)
		c.releaseCx()
		return nil, err
	}
	notePeer(h, nc)
	c.opened(h)
	return pool.NewConn(nc, c.now(), func() { c.closed(h) }), nil
}

// opened and closed keep the connection counters and free the slot.
func (c *Cluster) opened(h *Host) {
	h.CxTotal.Add(1)
	c.Stats.UpstreamCxTotal.Inc()
	c.Stats.UpstreamCxActive.Inc()
}

func (c *Cluster) closed(h *Host) {
	h.CxActive.Add(-1)
	c.Stats.UpstreamCxActive.Dec()
	c.releaseCx()
}

// Release hands a connection whose exchange completed cleanly back to its
// host for reuse.
func (c *Cluster) Release(h *Host, pc *pool.Conn) {
	h.Conns.Put(pc, c.now())
	c.waiting.wake()
}

func (c *Cluster) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return defaultIdleTimeout
}

// H2Conn returns an HTTP/2 connection to h with a stream reserved for one
// request, dialling one within max_connections when the host has none
// with room. At max_connections a live connection at its stream limit is
// shared (the request waits for a stream there); without one the request
// waits in the pending queue as for HTTP/1.1. The caller makes one
// RoundTrip on it (which takes the reservation) or calls Release. reused
// tells a connection the host already had from one dialled for this
// request.
func (c *Cluster) H2Conn(h *Host, deadline time.Time) (cc *http.ClientConn, reused bool, err error) {
	var q queued
	defer c.leave(&q)
	for {
		var wake <-chan struct{}
		if q.in() {
			wake = c.waiting.signal()
		}
		if cc := h.Conns.ReserveH2(); cc != nil {
			return cc, true, nil
		}
		slot := c.cx.takeOK()
		if !slot {
			if cc := h.Conns.AnyH2(); cc != nil {
				return cc, true, nil // the request waits for a stream there
			}
			if h.CxActive.Load() == 0 {
				// As for HTTP/1.1: a host without connections gets one.
				c.cx.overflowed()
				c.cx.force()
				slot = true
			}
		}
		if slot {
			cc, reserved, err := c.dialH2(h, deadline)
			if err != nil {
				return nil, false, err
			}
			if reserved {
				return cc, false, nil
			}
			continue
		}
		if !q.in() {
			if !c.join(&q) {
				return nil, false, ErrPendingOverflow
			}
			continue
		}
		if err := c.wait(wake, deadline); err != nil {
			return nil, false, err
		}
	}
}

// dialH2 opens a connection in a slot already taken and reserves a stream
// on it for the caller (reserved false: the connection had no room; it is
// kept for later requests). A host that left its cluster still gets its
// connection for the request that asked (as an HTTP/1.1 one, closed after
// it): a request routed on the previous config while the cluster was
// being replaced is served rather than failed.
func (c *Cluster) dialH2(h *Host, deadline time.Time) (cc *http.ClientConn, reserved bool, err error) {
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	scheme := "http"
	if c.HostTLS(h) {
		scheme = "https"
	}
	h.CxActive.Add(1) // a connection being made counts as one
	cc, err = c.h2transport().NewClientConn(ctx, scheme, h.Address)
	if err != nil {
		h.CxActive.Add(-1)
		c.releaseCx()
		return nil, false, err
	}
	c.opened(h)
	// Reserved before the state hook is set: the hook closes a connection
	// of a removed host once nothing is in flight, which must not happen
	// before this request's stream.
	reserved = cc.Reserve() == nil
	var once sync.Once
	cc.SetStateHook(func(cc *http.ClientConn) {
		if cc.Err() != nil {
			once.Do(func() {
				h.Conns.RemoveH2(cc)
				c.closed(h)
			})
			return
		}
		if cc.InFlight() == 0 && h.Conns.Closed() {
			// The host left the cluster while this connection was busy.
			go cc.Close()
			return
		}
		c.waiting.wake() // a stream may have freed up
	})
	if !h.Conns.AddH2(cc) {
		// The host left its cluster: this connection serves the one
		// request (the state hook closes it after) and is not pooled.
		if !reserved {
			cc.Close()
			return nil, false, errHostRemoved
		}
		return cc, true, nil
	}
	return cc, reserved, nil
}

// h2transport is the cluster's HTTP/2 connection factory: h2c with prior
// knowledge, or HTTP/2 over the cluster's TLS (ALPN h2).
func (c *Cluster) h2transport() *http.Transport {
	c.h2once.Do(func() {
		t := &http.Transport{DisableCompression: true, ForceAttemptHTTP2: true}
		var p http.Protocols
		if c.TLS != nil || len(c.sockets) > 0 {
			// Each host's own TLS config (transport socket matches) with
			// h2 offered; connections are made by address.
			withH2 := map[*pool.Dialer]*pool.Dialer{}
			var mu sync.Mutex
			h2Dialer := func(d *pool.Dialer) *pool.Dialer {
				mu.Lock()
				defer mu.Unlock()
				if h2, ok := withH2[d]; ok {
					return h2
				}
				h2 := *d
				h2.TLS = d.TLS.Clone()
				if len(h2.TLS.NextProtos) == 0 {
					h2.TLS.NextProtos = []string{"h2"}
				} else if !slices.Contains(h2.TLS.NextProtos, "h2") {
					h2.TLS.NextProtos = append(h2.TLS.NextProtos, "h2")
				}
				withH2[d] = &h2
				return &h2
			}
			t.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
				d := c.dialerForAddr(addr)
				if d.TLS == nil {
					return nil, fmt.Errorf("host %s has no TLS transport socket", addr)
				}
				conn, err := h2Dialer(d).DialContext(ctx, addr)
				if err == nil {
					notePeer(c.hostAt(addr), conn)
				}
				return conn, err
			}
			p.SetHTTP2(true)
		}
		if c.TLS == nil {
			t.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
				return c.dialerForAddr(addr).DialContext(ctx, addr)
			}
			p.SetUnencryptedHTTP2(true)
		}
		t.Protocols = &p
		c.h2 = t
	})
	return c.h2
}

// closeConns closes the idle connections of every host and keeps none
// from now on (the cluster was replaced or removed).
func (c *Cluster) closeConns() {
	for _, h := range c.Hosts() {
		h.Conns.Close()
	}
}

// CloseIdle closes the idle upstream connections of every host (the proxy
// is stopping).
func (c *Cluster) CloseIdle() {
	for _, h := range c.Hosts() {
		h.Conns.CloseIdle()
	}
}
