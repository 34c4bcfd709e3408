package listener

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	httpfilter "github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
)

// Server owns the proxy's listening sockets and serves their connections.
type Server struct {
	HTTP *httpconn.Manager
	TCP  *tcpproxy.Proxy
	// Rebind maps a configured listener address ("0.0.0.0:15006") to the
	// address actually bound ("127.0.0.1:25006"); a listener in the map is
	// bound even when bind_to_port is false, and its connections are
	// treated as if sent to the configured address. Tests and the no-root
	// demo use it to run several proxies on one host.
	Rebind map[string]string
	// DrainTime bounds how long connections of a removed listener may
	// finish before they are closed (default 5 s).
	DrainTime time.Duration
	// Logf logs listener events (nil: silent).
	Logf func(format string, args ...any)
	// inherited holds listening sockets handed over by the process this
	// one hot-restarts from, by bind address: a listener bound at one of
	// them takes it instead of binding (see Inherit).
	inherited map[string]net.Listener
	// hold, when set, keeps every accept loop waiting until it is closed
	// (HoldAccepting, StartAccepting).
	hold     chan struct{}
	holdOnce sync.Once
	// stopped: StopAccepting was called; Update binds nothing more.
	stopped bool

	mu      sync.Mutex
	running map[string]*running
	byAddr  atomic.Pointer[map[string]*running]
	conns   sync.WaitGroup
	open    atomic.Int64
}

type running struct {
	cfg    atomic.Pointer[Listener]
	ln     net.Listener
	bound  string
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Listeners returns the current compiled listeners by name.
func (s *Server) Listeners() map[string]*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*Listener, len(s.running))
	for n, r := range s.running {
		out[n] = r.cfg.Load()
	}
	return out
}

// BoundAddr returns the address a listener actually listens on ("" for
// virtual listeners or unknown names).
func (s *Server) BoundAddr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.running[name]; r != nil && r.ln != nil {
		return r.ln.Addr().String()
	}
	return ""
}

// Update makes ls the complete set of listeners. New sockets are bound
// first; if any bind fails nothing changes and the error is returned (the
// xDS update is NACKed). Listeners whose address is unchanged get the new
// config for new connections; removed ones stop accepting and drain.
func (s *Server) Update(ctx context.Context, ls []*Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]*running{}
	}
	type bindPlan struct {
		l    *Listener
		ln   net.Listener
		addr string
	}
	var plans []bindPlan
	closeAll := func() {
		for _, p := range plans {
			if p.ln != nil {
				p.ln.Close()
			}
		}
	}
	seen := map[string]bool{}
	addrs := map[string]string{}
	for _, l := range ls {
		if seen[l.Name] {
			closeAll()
			return fmt.Errorf("listener %q: duplicate name", l.Name)
		}
		seen[l.Name] = true
		if other, dup := addrs[l.Address]; dup {
			closeAll()
			return fmt.Errorf("listener %q: address %s is already used by listener %q", l.Name, l.Address, other)
		}
		addrs[l.Address] = l.Name
		if old := s.running[l.Name]; old != nil && old.cfg.Load().Address == l.Address && old.cfg.Load().Bind == l.Bind {
			continue
		}
		bindAddr, rebound := s.Rebind[l.Address]
		if !rebound {
			bindAddr = l.Address
		}
		p := bindPlan{l: l, addr: bindAddr}
		if l.Bind || rebound {
			if s.stopped {
				closeAll()
				return fmt.Errorf("listener %q: this process handed its sockets to its successor (hot restart) and binds no new one", l.Name)
			}
			ln, err := s.listen(ctx, bindAddr)
			if err != nil {
				closeAll()
				return fmt.Errorf("listener %q: bind %s: %w", l.Name, bindAddr, err)
			}
			p.ln = ln
		}
		plans = append(plans, p)
	}
	// Commit. A listener re-sent unchanged keeps its version (and its
	// connections); a changed one replaces it and the old version retires.
	for _, l := range ls {
		if old := s.running[l.Name]; old != nil && old.cfg.Load().Address == l.Address && old.cfg.Load().Bind == l.Bind {
			prev := old.cfg.Load()
			if prev.sameConfig(l) {
				continue
			}
			l.start()
			old.cfg.Store(l)
			prev.retire(s.drainTime())
		}
	}
	var removed []*running
	for name, r := range s.running {
		if !seen[name] {
			removed = append(removed, r)
			delete(s.running, name)
		}
	}
	for _, p := range plans {
		if old := s.running[p.l.Name]; old != nil {
			removed = append(removed, old)
		}
		r := &running{conns: map[net.Conn]struct{}{}, ln: p.ln, bound: p.addr}
		r.ctx, r.cancel = context.WithCancel(ctx)
		p.l.start()
		r.cfg.Store(p.l)
		s.running[p.l.Name] = r
		if p.ln != nil {
			s.logf("listener %q: listening on %s", p.l.Name, p.ln.Addr())
			go s.accept(r)
		}
	}
	by := make(map[string]*running, len(s.running))
	for _, r := range s.running {
		by[r.cfg.Load().Address] = r
	}
	s.byAddr.Store(&by)
	for _, r := range removed {
		s.drain(r)
	}
	return nil
}

func (s *Server) drainTime() time.Duration {
	if s.DrainTime <= 0 {
		return 5 * time.Second
	}
	return s.DrainTime
}

// listen takes the inherited socket for addr, or binds one.
func (s *Server) listen(ctx context.Context, addr string) (net.Listener, error) {
	if ln := s.inherited[addr]; ln != nil {
		delete(s.inherited, addr)
		s.logf("listening on %s: inherited from the previous process", addr)
		return ln, nil
	}
	return listen(ctx, addr)
}

func listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{}
	network := "tcp"
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		if ap.Addr().Is4() {
			network = "tcp4"
		} else {
			network = "tcp6"
		}
	}
	return lc.Listen(ctx, network, addr)
}

// drain stops accepting on r, lets its connections finish within
// DrainTime, then closes them.
func (s *Server) drain(r *running) {
	if r.ln != nil {
		r.ln.Close()
	}
	s.logf("listener %q: draining", r.cfg.Load().Name)
	r.cancel()
	r.cfg.Load().retire(s.drainTime())
	r.mu.Lock()
	for c := range r.conns {
		// Wake connections idle between requests; busy ones notice the
		// cancelled context after their current request.
		c.SetReadDeadline(time.Now())
	}
	r.mu.Unlock()
	d := s.drainTime()
	go func() {
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(d):
			r.mu.Lock()
			for c := range r.conns {
				c.Close()
			}
			r.mu.Unlock()
		}
	}()
}

func (s *Server) accept(r *running) {
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-r.ctx.Done():
			return
		}
	}
	var delay time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.ctx.Err() != nil {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.logf("listener %q: accept: %v; retrying in %v", r.cfg.Load().Name, err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		r.mu.Lock()
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		s.conns.Add(1)
		s.open.Add(1)
		go s.serve(r, c)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) serve(r *running, c net.Conn) {
	defer func() {
		c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		r.wg.Done()
		s.open.Add(-1)
		s.conns.Done()
	}()
	l := r.cfg.Load()
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	f := ConnFacts{SrcIP: remote.Addr().Unmap(), SrcPort: uint32(remote.Port())}
	dst := local
	if _, rebound := s.Rebind[l.Address]; rebound {
		// Pretend the connection was sent to the configured address.
		dst = netip.AddrPortFrom(l.IP, uint16(l.Port))
		if l.IP.IsUnspecified() {
			dst = netip.AddrPortFrom(local.Addr(), uint16(l.Port))
		}
	}
	origDst := ""
	if l.RestoreDst {
		if od, ok := originalDst(c); ok {
			dst = od
		}
		origDst = dst.String()
		if l.UseOriginalDst {
			if t := s.handOff(dst); t != nil && t != l {
				l = t
			}
		}
	}
	f.DstIP, f.DstPort = dst.Addr().Unmap(), uint32(dst.Port())
	br := httpconn.NewReader(c)
	defer httpconn.PutReader(br)
	var buf [16]*Chain
	if needsSniff(candidates(l.Chains, &f, buf[:0])) || (l.Default != nil && len(l.Chains) > 0 && needsSniff(l.Chains)) {
		sniff(c, br, l.SniffTimeout, &f)
	}
	chain := l.Match(&f)
	if chain == nil {
		if l.Stats != nil {
			l.Stats.NoFilterChainMatch.Inc()
		}
		s.logf("listener %q: no filter chain matches %s (from %s)", l.Name, dst, remote)
		return
	}
	if st := l.Stats; st != nil {
		st.DownstreamCxTotal.Inc()
		st.DownstreamCxActive.Inc()
		start := time.Now()
		defer func() {
			st.DownstreamCxActive.Dec()
			st.DownstreamCxDestroy.Inc()
			st.DownstreamCxLengthMs.Observe(float64(time.Since(start)) / float64(time.Millisecond))
		}()
	}
	fc := httpfilter.Conn{Remote: netip.AddrPortFrom(f.SrcIP, uint16(f.SrcPort)), Local: netip.AddrPortFrom(f.DstIP, uint16(f.DstPort))}
	alpn := ""
	if chain.TLS != nil {
		hctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		tc, err := chain.TLS.HandshakeReader(hctx, c, br)
		cancel()
		if err != nil {
			s.logf("listener %q chain %q: %v (from %s)", l.Name, chain.Name, err, remote)
			return
		}
		defer tc.Close()
		tbr := httpconn.NewReader(tc)
		defer httpconn.PutReader(tbr)
		c, br = tc, tbr
		cs := tc.ConnectionState()
		fc.SNI, alpn = cs.ServerName, cs.NegotiatedProtocol
		if len(cs.PeerCertificates) > 0 {
			fc.PeerCertificate, fc.PeerPrincipal = true, peerPrincipal(cs.PeerCertificates[0])
		}
	}
	for _, rules := range chain.RBAC {
		if allowed, p := rules.EvaluateConn(&fc); !allowed {
			policy := "none"
			if p != nil {
				policy = p.Name
			}
			s.logf("listener %q chain %q: rbac: connection from %s to %s closed: enforced denied, rbac_access_denied_matched_policy[%s]", l.Name, chain.Name, fc.Remote, fc.Local, policy)
			return
		}
	}
	ctx, done := l.track(r.ctx, c)
	defer done()
	switch {
	case chain.HTTP != nil:
		s.HTTP.ServeConn(ctx, chain.HTTP, c, br, httpconn.ConnInfo{OriginalDst: origDst, TLS: chain.TLS != nil, ALPN: alpn, Conn: fc})
	case chain.TCP != nil:
		s.TCP.Serve(ctx, chain.TCP, c, br, origDst)
	}
}

// Inherit gives the server the listening sockets of the process it
// hot-restarts from, by bind address (the configured address, or its
// Rebind target); call it before the first Update. A listener whose
// address has one takes it instead of binding, so the socket (and the
// connections queued on it) is never closed.
func (s *Server) Inherit(ls map[string]net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inherited = ls
}

// CloseUnclaimed closes the inherited sockets no listener took (the new
// configuration has no listener there any more) and returns their
// addresses.
func (s *Server) CloseUnclaimed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a, ln := range s.inherited {
		ln.Close()
		out = append(out, a)
	}
	s.inherited = nil
	return out
}

// HoldAccepting makes listeners bound from now on wait before their first
// accept until StartAccepting: a hot-restarted process holds the sockets
// while it warms its configuration, and the old process keeps accepting
// on them. Call it before the first Update.
func (s *Server) HoldAccepting() { s.hold = make(chan struct{}) }

// StartAccepting ends HoldAccepting.
func (s *Server) StartAccepting() {
	if s.hold != nil {
		s.holdOnce.Do(func() { close(s.hold) })
	}
}

// Sockets returns the bound listening sockets by bind address (port 0
// binds left out: a successor could not ask for them by address).
func (s *Server) Sockets() map[string]net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]net.Listener{}
	for _, r := range s.running {
		if r.ln == nil || strings.HasSuffix(r.bound, ":0") {
			continue
		}
		out[r.bound] = r.ln
	}
	return out
}

// StopAccepting closes this process's listening descriptors and binds no
// new ones, keeping every connection: the hot restart handover, after
// which the successor, holding its own descriptors for the same sockets,
// accepts alone. Connections already accepted are served on (drain them
// with the connection managers' drain).
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, r := range s.running {
		if r.ln != nil {
			r.ln.Close()
		}
	}
}

// Conns returns how many downstream connections are open, those of
// removed listeners still draining included.
func (s *Server) Conns() int64 { return s.open.Load() }

// handOff finds the listener for an original destination: exact ip:port,
// then 0.0.0.0:port (or [::]:port).
func (s *Server) handOff(dst netip.AddrPort) *Listener {
	m := s.byAddr.Load()
	if m == nil {
		return nil
	}
	port := strconv.Itoa(int(dst.Port()))
	if r := (*m)[net.JoinHostPort(dst.Addr().Unmap().String(), port)]; r != nil {
		return r.cfg.Load()
	}
	if r := (*m)[net.JoinHostPort("0.0.0.0", port)]; r != nil {
		return r.cfg.Load()
	}
	if r := (*m)[net.JoinHostPort("::", port)]; r != nil {
		return r.cfg.Load()
	}
	return nil
}

// Close stops every listener and closes every connection at once: the end
// of a drain, when what has not finished is cut (as Envoy's exit does).
// It waits, at most a second, for the connections' goroutines to return.
func (s *Server) Close() {
	s.mu.Lock()
	all := make([]*running, 0, len(s.running))
	for _, r := range s.running {
		all = append(all, r)
	}
	s.running = map[string]*running{}
	empty := map[string]*running{}
	s.byAddr.Store(&empty)
	s.mu.Unlock()
	for _, r := range all {
		if r.ln != nil {
			r.ln.Close()
		}
		r.cancel()
		r.cfg.Load().retire(0)
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// peerPrincipal is the identity RBAC's authenticated principal matches:
// the certificate's first URI SAN (a SPIFFE ID), else its first DNS SAN,
// else its subject, as Envoy takes it.
func peerPrincipal(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}
