package pool

import (
	"net/http"
	"sync"
	"time"
)

// MaxIdle bounds the idle HTTP/1.1 connections an Endpoint keeps.
const MaxIdle = 256

// Endpoint holds one upstream host's connections: idle HTTP/1.1
// connections and live HTTP/2 client connections. The zero Endpoint is
// empty and ready; it is safe for concurrent use. Its lock is the host's
// own and held only to push or pop a list entry, never while a connection
// is called (a ClientConn may call back into the Endpoint from its state
// hook).
type Endpoint struct {
	mu     sync.Mutex
	idle   []*Conn
	h2     []*http.ClientConn
	closed bool // the host left its cluster: nothing more is kept
}

// Take returns an idle connection, or nil. Connections idle longer than
// idleTimeout, older than maxAge (0: no limit) or closed by the peer are
// closed on the way.
func (e *Endpoint) Take(now time.Time, idleTimeout, maxAge time.Duration) *Conn {
	for {
		e.mu.Lock()
		n := len(e.idle)
		if n == 0 {
			e.mu.Unlock()
			return nil
		}
		c := e.idle[n-1]
		e.idle[n-1] = nil
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		idle := now.Sub(c.idleAt)
		if idle > idleTimeout || (maxAge > 0 && now.Sub(c.born) > maxAge) || (idle > aliveCheckAfter && !c.alive()) {
			c.Close()
			continue
		}
		c.Reused = true
		return c
	}
}

// Put keeps a connection whose last exchange completed cleanly for reuse;
// a connection that cannot be kept is closed.
func (e *Endpoint) Put(c *Conn, now time.Time) {
	if c.BR.Buffered() > 0 {
		// Unexpected bytes after a complete response: not reusable.
		c.Close()
		return
	}
	c.idleAt = now
	c.Conn.SetDeadline(time.Time{})
	e.mu.Lock()
	if e.closed || len(e.idle) >= MaxIdle {
		e.mu.Unlock()
		c.Close()
		return
	}
	e.idle = append(e.idle, c)
	e.mu.Unlock()
}

// Close closes the idle connections like CloseIdle and makes the Endpoint
// keep nothing from now on: connections handed back later are closed (the
// host left its cluster).
func (e *Endpoint) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.CloseIdle()
}

// Closed reports whether Close was called.
func (e *Endpoint) Closed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// CloseIdle closes every idle HTTP/1.1 connection and every HTTP/2
// connection without requests in flight.
func (e *Endpoint) CloseIdle() {
	e.mu.Lock()
	idle := e.idle
	e.idle = nil
	var h2 []*http.ClientConn
	keep := e.h2[:0]
	for _, cc := range e.h2 {
		if cc.InFlight() == 0 {
			h2 = append(h2, cc)
		} else {
			keep = append(keep, cc)
		}
	}
	clear(e.h2[len(keep):])
	e.h2 = keep
	e.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	for _, cc := range h2 {
		cc.Close()
	}
}

// IdleCount returns the number of idle HTTP/1.1 connections.
func (e *Endpoint) IdleCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.idle)
}

// ReserveH2 reserves a stream on a live HTTP/2 connection with room for
// one, or returns nil. The caller makes exactly one RoundTrip (or Release)
// on it.
//
// The lock is not held while a connection is asked: Reserve may run the
// connection's state hook, which drops a dead connection with RemoveH2.
func (e *Endpoint) ReserveH2() *http.ClientConn {
	for i := 0; ; i++ {
		e.mu.Lock()
		if e.closed || i >= len(e.h2) {
			// Closed: the host left its cluster; its connections only
			// finish the requests they have (each is closed when the last
			// one ends), so a new request must not take a stream there.
			e.mu.Unlock()
			return nil
		}
		cc := e.h2[i]
		e.mu.Unlock()
		if cc.Reserve() != nil {
			continue
		}
		if e.Closed() {
			// Closed meanwhile: give the stream back, which lets the
			// connection close once its requests are done.
			cc.Release()
			return nil
		}
		return cc
	}
}

// AnyH2 returns a live HTTP/2 connection even when it is at its stream
// limit (a request on it waits for a stream), or nil.
func (e *Endpoint) AnyH2() *http.ClientConn {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	for _, cc := range e.h2 {
		if cc.Err() == nil {
			return cc
		}
	}
	return nil
}

// AddH2 adds a new HTTP/2 connection; it reports false when the Endpoint
// was closed (the caller closes the connection).
func (e *Endpoint) AddH2(cc *http.ClientConn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.h2 = append(e.h2, cc)
	return true
}

// RemoveH2 drops a connection that can no longer be used.
func (e *Endpoint) RemoveH2(cc *http.ClientConn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, x := range e.h2 {
		if x == cc {
			last := len(e.h2) - 1
			e.h2[i] = e.h2[last]
			e.h2[last] = nil
			e.h2 = e.h2[:last]
			return
		}
	}
}
