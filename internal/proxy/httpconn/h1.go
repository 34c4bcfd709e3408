package httpconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// h1Conn is one downstream HTTP/1.1 connection; it is also the exchange's
// sink.
type h1Conn struct {
	m    *Manager
	cfg  *Config
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	info ConnInfo
	req  http1.Request
	body http1.Body
	ex   exchange

	chunked    bool
	closeAfter bool
	retired    bool // the connection's context ended: close after this request
	num        [20]byte
	cw         http1.ChunkedWriter
	broken     bool
	// bodyCut is set when a read of a chunked request body by another
	// goroutine had to be broken off: the body's framing may be lost.
	bodyCut bool

	// dl is the read deadline last set on c and dlKind what it is for:
	// deadlines are re-armed only when they would be wrong, not per
	// request (SetReadDeadline takes the runtime's timer locks).
	dl     time.Time
	dlKind uint8
}

// Read deadline kinds of an HTTP/1.1 connection.
const (
	dlNone   uint8 = iota // no deadline
	dlIdle                // between requests: IdleTimeout, with slack
	dlStream              // inside a request: StreamIdleTimeout
	dlHead                // inside a request head: RequestHeadersTimeout
)

// awaitHead waits (under the idle or stream deadline already armed) for
// the first byte of the next request, then bounds the rest of its head by
// RequestHeadersTimeout. It reports false when the connection ended first.
func (hc *h1Conn) awaitHead() bool {
	if _, err := hc.br.Peek(1); err != nil {
		return false
	}
	hc.dl = hc.m.now().Add(hc.cfg.RequestHeadersTimeout)
	hc.dlKind = dlHead
	hc.c.SetReadDeadline(hc.dl)
	return true
}

// armIdle makes sure the read deadline before the next request is at least
// IdleTimeout away. The deadline is set IdleTimeout plus a slack ahead and
// only re-armed once less than IdleTimeout is left, so a busy keep-alive
// connection sets it about once per slack instead of once per request; an
// idle connection closes between IdleTimeout and IdleTimeout+slack.
func (hc *h1Conn) armIdle() {
	t := hc.cfg.IdleTimeout
	if t <= 0 {
		if hc.dlKind != dlNone {
			hc.c.SetReadDeadline(time.Time{})
			hc.dlKind = dlNone
		}
		return
	}
	now := hc.m.now()
	if hc.dlKind == dlIdle && hc.dl.Sub(now) >= t {
		return
	}
	slack := t / 8
	if slack > time.Minute {
		slack = time.Minute
	}
	hc.dl = now.Add(t + slack)
	hc.dlKind = dlIdle
	hc.c.SetReadDeadline(hc.dl)
}

// armStream applies StreamIdleTimeout to the reads of a request's body. A
// body already buffered with the head needs no read from the connection,
// so the deadline is left alone then.
func (hc *h1Conn) armStream() {
	req := &hc.req
	if !req.Chunked && !req.Expect100 && (req.ContentLength <= 0 || req.ContentLength <= int64(hc.br.Buffered())) {
		return
	}
	if t := hc.cfg.StreamIdleTimeout; t > 0 {
		hc.dl = hc.m.now().Add(t)
		hc.dlKind = dlStream
		hc.c.SetReadDeadline(hc.dl)
	} else if hc.dlKind != dlNone {
		hc.c.SetReadDeadline(time.Time{})
		hc.dlKind = dlNone
	}
}

var h1Conns = sync.Pool{New: func() any { return new(h1Conn) }}

func (m *Manager) serveH1(ctx context.Context, cfg *Config, c net.Conn, br *bufio.Reader, info ConnInfo) {
	hc := h1Conns.Get().(*h1Conn)
	hc.m, hc.cfg, hc.c, hc.br, hc.info = m, cfg, c, br, info
	hc.bw = writers.Get().(*bufio.Writer)
	hc.bw.Reset(c)
	hc.cw.W = hc.bw
	hc.broken = false
	hc.req.MaxBytes, hc.req.MaxFields = cfg.MaxRequestHeadersBytes, cfg.MaxHeadersCount
	ex := &hc.ex
	ex.m, ex.cfg, ex.info, ex.sink, ex.h1 = m, cfg, &hc.info, hc, hc
	defer func() {
		ex.release()
		hc.bw.Reset(nil)
		writers.Put(hc.bw)
		hc.bw, hc.c, hc.br, hc.m, hc.cfg = nil, nil, nil, nil, nil
		ex.m, ex.cfg, ex.info, ex.sink, ex.h1 = nil, nil, nil, nil, nil
		ex.q = route.Request{}
		h1Conns.Put(hc)
	}()
	// ServeConn armed the stream idle deadline for the first request.
	hc.dl, hc.dlKind = time.Time{}, dlStream
	if cfg.StreamIdleTimeout <= 0 {
		hc.dlKind = dlNone
	}
	first := true
	for {
		if !first {
			if ctx.Err() != nil {
				// Draining, or the listener version retired: a request
				// already on its way is still answered (with
				// "connection: close"); an idle connection closes.
				hc.dl, hc.dlKind = hc.m.now().Add(closingGrace), dlStream
				hc.c.SetReadDeadline(hc.dl)
			} else {
				hc.armIdle()
			}
		}
		if cfg.RequestHeadersTimeout > 0 && !hc.awaitHead() {
			return
		}
		err := http1.ReadRequest(br, &hc.req)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, http1.ErrHeaderTooLarge):
				hc.errorReply(431)
			case errors.Is(err, http1.ErrNotImplemented):
				hc.errorReply(501)
			case errors.Is(err, http1.ErrMalformed):
				hc.errorReply(400)
			case hc.dlKind == dlHead && errors.As(err, &ne) && ne.Timeout():
				// Envoy answers a head that took too long with 408.
				hc.errorReply(408)
			}
			return
		}
		first = false
		hc.armStream()
		// A retired listener version or a drain: answer this request,
		// then close.
		hc.retired = ctx.Err() != nil
		if !hc.serveOne() {
			return
		}
	}
}

// closingGrace is how long a connection that must close waits for a
// request the client may have sent at the moment it was told to: closing
// at once would reset that request.
const closingGrace = 100 * time.Millisecond

// errorReply answers an unparsable request and closes (gracefully: see
// linger).
func (hc *h1Conn) errorReply(status int) {
	http1.WriteStatusLine(hc.bw, status, nil)
	hc.bw.WriteString("content-length: 0\r\nconnection: close\r\n\r\n")
	if hc.bw.Flush() == nil {
		hc.linger()
	}
}

// serveOne serves the parsed request; it reports whether the connection
// stays open.
func (hc *h1Conn) serveOne() bool {
	req := &hc.req
	ex := &hc.ex
	ex.reset()
	ex.start = hc.m.now()
	ex.q.Method = req.Method
	ex.q.Path = req.Target
	ex.q.Authority = req.Host
	ex.q.Scheme = schemeHTTP
	if hc.info.TLS {
		ex.q.Scheme = schemeHTTPS
	}
	if len(req.Target) > 0 && req.Target[0] != '/' && req.Target[0] != '*' {
		// absolute form: http://authority/path
		if a, p, ok := splitAbsolute(req.Target); ok {
			ex.q.Authority, ex.q.Path = a, p
		}
	}
	ex.headReq = string(req.Method) == "HEAD"
	if req.Upgrade {
		if v, ok := req.Headers.Get("upgrade"); ok {
			ex.upgrade = v
		}
	}
	h := req.Headers
	// Drop connection-specific fields (and the fields Connection names).
	connVal, _ := h.Get("connection")
	n := 0
	for _, f := range h {
		if http1.IsHopByHop(f.Name) || (connVal != nil && listsName(connVal, f.Name)) || http1.EqualFold(f.Name, "host") || http1.EqualFold(f.Name, "content-length") ||
			(req.Expect100 && http1.EqualFold(f.Name, "expect")) {
			if http1.EqualFold(f.Name, "te") && http1.HasToken(f.Value, "trailers") {
				h[n] = http1.Header{Name: f.Name, Value: trailersValue}
				n++
			}
			continue
		}
		h[n] = f
		n++
	}
	ex.q.Headers = h[:n]
	hc.body.ForRequest(hc.br, req)
	if req.HasBody() {
		ex.body = &hc.body
		ex.bodyLen = req.ContentLength
		if req.Chunked {
			ex.bodyLen = -1
		}
		if req.Expect100 {
			// "100 Continue" goes out when the router first reads the
			// body; a local reply never asks for it.
			hc.body.ExpectContinue(hc.bw)
		}
	}
	hc.chunked = false
	hc.bodyCut = false
	hc.closeAfter = req.Close || hc.retired || hc.m.draining(hc.cfg)
	ex.run()
	ex.observe()
	ex.release()
	if cap(ex.q.Headers) > cap(hc.req.Headers) {
		// Keep the grown header array for the next request.
		hc.req.Headers = ex.q.Headers[:0]
	}
	if hc.broken {
		return false
	}
	if hc.bodyCut {
		hc.linger()
		return false
	}
	if !hc.body.Done() {
		return hc.unreadBody()
	}
	return !hc.closeAfter
}

// Bounds for a request body left unread by the response (a local reply,
// or an upstream that answered early). Up to maxDrainBody bytes are read
// and dropped, within drainTimeout, so that the connection serves the next
// request (net/http does the same with 256 KiB); a longer body, or one the
// client holds back for "100 Continue", closes the connection instead, as
// Envoy does. The close half-closes first and reads for up to
// lingerTimeout (Envoy's delayed_close_timeout default) so that the
// client's unread bytes do not reset the connection before it has read
// the response.
const (
	maxDrainBody  = 64 << 10
	drainTimeout  = time.Second
	lingerTimeout = time.Second
)

// closesForBody reports whether the response being written must close
// the connection because of the request body: the client waits for
// "100 Continue", or more than maxDrainBody bytes of a known length are
// left. Only a body no other goroutine reads is inspected (an HTTP/2
// upstream's transport streams it concurrently).
func (hc *h1Conn) closesForBody() bool {
	ex := &hc.ex
	if ex.rt.bodyTaken && ex.rt.up.h2body != nil {
		return false
	}
	if hc.body.Done() {
		return false
	}
	if hc.body.ContinuePending() {
		return true
	}
	n, known := hc.body.Remaining()
	return known && n > maxDrainBody
}

// wakeBodyRead breaks off a read of the request body blocked on the
// connection (another goroutine's: an HTTP/2 upstream's transport).
func (hc *h1Conn) wakeBodyRead() { hc.c.SetReadDeadline(time.Unix(1, 0)) }

// bodyInterrupted re-arms the read deadline after wakeBodyRead. A body of
// known length can still be drained; a chunked one may have lost part of
// a chunk header, so the connection closes after the response.
func (hc *h1Conn) bodyInterrupted() {
	hc.dl, hc.dlKind = time.Time{}, dlNone
	if t := hc.cfg.StreamIdleTimeout; t > 0 {
		hc.dl, hc.dlKind = hc.m.now().Add(t), dlStream
	}
	hc.c.SetReadDeadline(hc.dl)
	if _, known := hc.body.Remaining(); !known {
		hc.bodyCut = true
	}
}

// unreadBody ends a request whose response went out before its body was
// read: the response is flushed, then the body is drained so that the
// connection stays open, or the connection is closed gracefully. It
// reports whether the connection stays open.
func (hc *h1Conn) unreadBody() bool {
	if err := hc.flush(); err != nil {
		return false
	}
	if !hc.closeAfter {
		hc.dl, hc.dlKind = hc.m.now().Add(drainTimeout), dlStream
		hc.c.SetReadDeadline(hc.dl)
		if hc.body.Discard(maxDrainBody) {
			return true
		}
	}
	hc.linger()
	return false
}

// linger half-closes the connection and drops what the client still sends
// until it closes its side or lingerTimeout passes.
func (hc *h1Conn) linger() {
	cw, ok := hc.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	hc.dl, hc.dlKind = hc.m.now().Add(lingerTimeout), dlStream
	hc.c.SetReadDeadline(hc.dl)
	hc.br.Discard(hc.br.Buffered())
	buf := hc.ex.copyBuf()
	for {
		if _, err := hc.c.Read(buf); err != nil {
			break
		}
	}
	hc.ex.release()
}

var (
	schemeHTTP    = []byte("http")
	schemeHTTPS   = []byte("https")
	trailersValue = []byte("trailers")
)

// listsName reports whether the Connection value v names the field name.
func listsName(v, name []byte) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(part), name) {
			return true
		}
	}
	return false
}

func splitAbsolute(t []byte) (authority, path []byte, ok bool) {
	s := t
	switch {
	case len(s) > 7 && http1.EqualFold(s[:7], "http://"):
		s = s[7:]
	case len(s) > 8 && http1.EqualFold(s[:8], "https://"):
		s = s[8:]
	default:
		return nil, nil, false
	}
	for i, c := range s {
		if c == '/' || c == '?' {
			if c == '?' {
				return s[:i], append([]byte("/"), s[i:]...), true
			}
			return s[:i], s[i:], true
		}
	}
	return s, []byte("/"), true
}

// writeHead implements sink.
func (hc *h1Conn) writeHead(status int, reason []byte, h http1.Headers, n int64) error {
	bw := hc.bw
	http1.WriteStatusLine(bw, status, reason)
	for _, f := range h {
		http1.WriteField(bw, f.Name, f.Value)
	}
	switch {
	case n >= 0:
		http1.WriteFieldS(bw, "content-length", http1.AppendInt(hc.num[:0], n))
	case n == -1:
		if hc.req.Minor >= 1 {
			hc.chunked = true
			bw.WriteString("transfer-encoding: chunked\r\n")
		} else {
			hc.closeAfter = true
		}
	}
	if !hc.closeAfter && status != 101 && (hc.closesForBody() || hc.m.draining(hc.cfg)) {
		// A drain that began while the request was in flight closes
		// the connection after its response too.
		hc.closeAfter = true
	}
	if hc.closeAfter && status != 101 {
		bw.WriteString("connection: close\r\n")
	}
	_, err := bw.WriteString("\r\n")
	if err != nil {
		hc.broken = true
	}
	return err
}

// Write implements sink.
func (hc *h1Conn) Write(p []byte) (int, error) {
	var n int
	var err error
	if hc.chunked {
		n, err = hc.cw.Write(p)
	} else {
		n, err = hc.bw.Write(p)
	}
	if err != nil {
		hc.broken = true
	}
	return n, err
}

func (hc *h1Conn) flush() error {
	err := hc.bw.Flush()
	if err != nil {
		hc.broken = true
	}
	return err
}

func (hc *h1Conn) finish(trailers http1.Headers) error {
	if hc.chunked {
		hc.cw.Close(trailers)
		hc.chunked = false
	}
	if hc.ex.rt.up.h2body == nil && hc.br.Buffered() > 0 && !hc.closeAfter {
		// A pipelined request is waiting: its response will flush. (The
		// reader is not looked at while an HTTP/2 upstream's transport
		// may be reading the body from it.)
		return nil
	}
	return hc.flush()
}

func (hc *h1Conn) abort() {
	hc.bw.Flush()
	hc.broken = true
}

// tunnel splices an upgraded connection (WebSocket) in both directions
// until both sides are done, with half-close.
func (hc *h1Conn) tunnel(uc *pool.Conn, ex *exchange) {
	defer ex.rt.up.discard()
	hc.broken = true // the downstream connection ends with the tunnel
	if err := hc.bw.Flush(); err != nil {
		return
	}
	hc.c.SetDeadline(time.Time{})
	uc.SetDeadline(time.Time{})
	done := make(chan int64, 1)
	go func() {
		// upstream -> downstream (include bytes already buffered)
		n, _ := io.Copy(hc.c, uc.BR)
		closeWrite(hc.c)
		done <- n
	}()
	n, _ := io.Copy(uc.Conn, hc.br)
	ex.rec.BytesReceived += n
	closeWrite(uc.Conn)
	ex.bodyOut += <-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
