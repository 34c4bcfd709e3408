package pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

// Conn is one upstream HTTP/1.1 connection with its buffers.
type Conn struct {
	net.Conn
	BR *bufio.Reader
	BW *bufio.Writer
	// Addr is the pool key: the address dialled, prefixed with the bind
	// source when there is one.
	Addr string
	// Reused is set when Get returned the connection from the idle list.
	Reused bool
	// Requests counts the exchanges made on this connection.
	Requests int
	idleAt   time.Time
	rc       syscall.RawConn
	peek     func(fd uintptr) bool
	peekOK   bool
}

// Options configures a Pool. Zero values mean the documented defaults.
type Options struct {
	// MaxIdlePerHost bounds idle connections kept per address (default 256).
	MaxIdlePerHost int
	// IdleTimeout closes connections idle longer than this (default 1 h,
	// Envoy's common_http_protocol_options.idle_timeout default).
	IdleTimeout time.Duration
	// Dial opens a connection; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now returns the time; nil uses time.Now.
	Now func() time.Time
}

// Pool holds idle upstream connections keyed by address. It is safe for
// concurrent use.
type Pool struct {
	opts Options
	mu   sync.Mutex
	idle map[string][]*Conn

	h2once sync.Once
	h2     *http2.Transport
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// New returns an empty pool.
func New(opts Options) *Pool {
	if opts.MaxIdlePerHost == 0 {
		opts.MaxIdlePerHost = 256
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = time.Hour
	}
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = d.DialContext
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Pool{opts: opts, idle: map[string][]*Conn{}}
}

// Get returns an idle connection to addr, or dials a new one within
// connectTimeout (0: no limit). bind, when set, is the local source IP
// (upstream_bind_config, e.g. 127.0.0.6 for inbound passthrough);
// connections with different sources are pooled apart.
func (p *Pool) Get(addr, bind string, connectTimeout time.Duration) (*Conn, error) {
	now := p.opts.Now()
	key := addr
	if bind != "" {
		key = bind + ">" + addr
	}
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[key] = list[:len(list)-1]
		p.mu.Unlock()
		idle := now.Sub(c.idleAt)
		if idle > p.opts.IdleTimeout || (idle > aliveCheckAfter && !c.alive()) {
			c.Close()
			continue
		}
		c.Reused = true
		return c, nil
	}
	return p.Dial(addr, bind, connectTimeout)
}

// Dial always opens a new connection (see Get).
func (p *Pool) Dial(addr, bind string, connectTimeout time.Duration) (*Conn, error) {
	ctx := context.Background()
	if connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	var nc net.Conn
	var err error
	if bind != "" {
		nc, err = bindDial(ctx, bind, addr)
	} else {
		nc, err = p.opts.Dial(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(nc)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	key := addr
	if bind != "" {
		key = bind + ">" + addr
	}
	c := &Conn{Conn: nc, BR: br, BW: bw, Addr: key}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
			c.peek = c.peekFD
		}
	}
	return c, nil
}

// Put returns a connection whose last exchange completed cleanly.
func (p *Pool) Put(c *Conn) {
	if c.BR.Buffered() > 0 {
		// Unexpected bytes after a complete response: not reusable.
		p.Discard(c)
		return
	}
	c.idleAt = p.opts.Now()
	c.Conn.SetDeadline(time.Time{})
	p.mu.Lock()
	list := p.idle[c.Addr]
	if len(list) >= p.opts.MaxIdlePerHost {
		p.mu.Unlock()
		p.Discard(c)
		return
	}
	p.idle[c.Addr] = append(list, c)
	p.mu.Unlock()
}

// Discard closes a connection and recycles its buffers.
func (p *Pool) Discard(c *Conn) {
	c.Conn.Close()
	if c.BR != nil {
		c.BR.Reset(nil)
		readers.Put(c.BR)
		c.BR = nil
	}
	if c.BW != nil {
		c.BW.Reset(nil)
		writers.Put(c.BW)
		c.BW = nil
	}
}

// CloseIdle closes every idle connection (to addr, or all when addr is
// empty), e.g. when a host leaves its cluster.
func (p *Pool) CloseIdle(addr string) {
	p.mu.Lock()
	var drop []*Conn
	for a, list := range p.idle {
		if addr == "" || a == addr {
			drop = append(drop, list...)
			delete(p.idle, a)
		}
	}
	p.mu.Unlock()
	for _, c := range drop {
		p.Discard(c)
	}
	if addr == "" && p.h2 != nil {
		p.h2.CloseIdleConnections()
	}
}

// IdleCount returns the number of idle connections to addr.
func (p *Pool) IdleCount(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[addr])
}

// aliveCheckAfter is how long a connection must have been idle before Get
// peeks at it for a remote close; a busier connection is reused as is (a
// request that finds it closed is retried once on a fresh connection).
const aliveCheckAfter = 500 * time.Millisecond

// alive peeks at the socket without blocking: a readable EOF, an error or
// unexpected data means the peer closed or broke the connection.
func (c *Conn) alive() bool {
	if c.rc == nil {
		return true
	}
	c.peekOK = false
	if err := c.rc.Read(c.peek); err != nil {
		return false
	}
	return c.peekOK
}

func (c *Conn) peekFD(fd uintptr) bool {
	var b [1]byte
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	c.peekOK = errno == unix.EAGAIN || errno == unix.EWOULDBLOCK
	return true
}

// H2 returns the shared HTTP/2 transport: cleartext (h2c, prior knowledge)
// to upstreams, connections pooled and multiplexed per address.
func (p *Pool) H2() *http2.Transport {
	p.h2once.Do(func() {
		p.h2 = &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				o, _ := ctx.Value(dialKey{}).(*DialOptions)
				if o != nil && o.ConnectTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
					defer cancel()
				}
				var c net.Conn
				var err error
				if o != nil && o.Bind != "" {
					c, err = bindDial(ctx, o.Bind, addr)
				} else {
					c, err = p.opts.Dial(ctx, network, addr)
				}
				if err != nil {
					return nil, err
				}
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetNoDelay(true)
				}
				return c, nil
			},
			ReadIdleTimeout:    0,
			DisableCompression: true,
		}
	})
	return p.h2
}

// bindDial dials from a fixed source IP.
func bindDial(ctx context.Context, bind, addr string) (net.Conn, error) {
	ip := net.ParseIP(bind)
	if ip == nil {
		return nil, &net.AddrError{Err: "invalid bind source", Addr: bind}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	return d.DialContext(ctx, "tcp", addr)
}

type dialKey struct{}

// DialOptions are per-request dial settings for the HTTP/2 transport.
type DialOptions struct {
	// Bind is the local source IP ("" for any).
	Bind string
	// ConnectTimeout bounds the dial (0: only the request's deadline).
	ConnectTimeout time.Duration
}

// WithDialOptions attaches dial settings to a request context.
func WithDialOptions(ctx context.Context, o *DialOptions) context.Context {
	return context.WithValue(ctx, dialKey{}, o)
}
