package httpconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// sendH1 sends the request on an HTTP/1.1 connection to the host and
// reads the response head. On okResponse a.conn holds the connection and
// a.resp/a.body the response.
func (a *attempt) sendH1(rt *router, deadline time.Time) (outcome, int) {
	fresh := false
	for {
		c, err := a.cl.Conn(a.host, fresh, deadline)
		if err != nil {
			return a.connError(err)
		}
		if !deadline.IsZero() {
			c.SetDeadline(deadline)
		}
		c.Requests++
		err = rt.writeRequestH1(c)
		if errors.Is(err, http1.ErrMalformed) {
			// The client's body broke off mid-stream, not the upstream.
			c.Close()
			return downstreamFailed, 0
		}
		if err == nil || (rt.bodyTaken && c.BW.Flush() != nil) {
			// Also when the upstream stopped taking the body: it may
			// have answered without reading it (413, 401), and that
			// answer is the one to forward, as Envoy does.
			err = a.readResponseH1(c, rt.e.headReq)
		}
		if err == nil {
			a.conn = c
			return okResponse, a.resp.Status
		}
		c.Close()
		if isTimeout(err) {
			return timedOut, 0
		}
		if c.Reused && staleConnError(err) && (rt.buffered || !rt.bodyTaken) {
			// The server closed an idle keep-alive connection: try once on
			// a fresh one, as the request never reached it.
			fresh = true
			continue
		}
		return resetBeforeResponse, 0
	}
}

func staleConnError(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeRequestH1 writes the upstream request on c, with the body (the
// buffered copy, or the downstream body streamed).
func (rt *router) writeRequestH1(c *pool.Conn) error {
	e := rt.e
	bw := c.BW
	bw.Write(e.q.Method)
	bw.WriteByte(' ')
	if len(rt.path) == 0 {
		bw.WriteByte('/')
	} else {
		bw.Write(rt.path)
	}
	bw.WriteString(" HTTP/1.1\r\n")
	if len(rt.hostHdr) > 0 {
		http1.WriteFieldS(bw, "host", rt.hostHdr)
	}
	for _, f := range e.q.Headers {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		http1.WriteField(bw, f.Name, f.Value)
	}
	if rt.timeoutHdr != nil {
		http1.WriteFieldS(bw, "x-envoy-expected-rq-timeout-ms", rt.timeoutHdr)
	}
	if rt.countHdr != nil {
		http1.WriteFieldS(bw, "x-envoy-attempt-count", rt.countHdr)
	}
	if e.upgrade != nil {
		bw.WriteString("connection: upgrade\r\n")
		http1.WriteFieldS(bw, "upgrade", e.upgrade)
	}
	chunked := false
	switch {
	case rt.buffered:
		http1.WriteFieldS(bw, "content-length", strconv.AppendInt(rt.numBuf[:0], int64(len(rt.replay)), 10))
	case e.body == nil:
		if methodNeedsLength(e.q.Method) {
			bw.WriteString("content-length: 0\r\n")
		}
	case e.bodyLen >= 0:
		http1.WriteFieldS(bw, "content-length", strconv.AppendInt(rt.numBuf[:0], e.bodyLen, 10))
	default:
		chunked = true
		bw.WriteString("transfer-encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	switch {
	case rt.buffered:
		bw.Write(rt.replay)
	case e.body != nil:
		if err := rt.streamBody(bw, chunked); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// streamBody copies the downstream body to the upstream connection.
func (rt *router) streamBody(bw *bufio.Writer, chunked bool) error {
	e := rt.e
	rt.bodyTaken = true
	var n int64
	var err error
	if chunked {
		cw := http1.ChunkedWriter{W: bw}
		n, err = io.CopyBuffer(&cw, e.body, e.copyBuf())
		if err == nil {
			var tr http1.Headers
			if b, ok := e.body.(*http1.Body); ok {
				tr = b.Trailers
			}
			err = cw.Close(tr)
		}
	} else {
		rt.limited = io.LimitedReader{R: e.body, N: e.bodyLen}
		n, err = io.CopyBuffer(bw, &rt.limited, e.copyBuf())
		rt.limited.R = nil
		if err == nil && n < e.bodyLen {
			err = io.ErrUnexpectedEOF
		}
	}
	e.rec.BytesReceived = n
	return err
}

func methodNeedsLength(m []byte) bool {
	s := string(m)
	return s == "POST" || s == "PUT" || s == "PATCH"
}

func (a *attempt) readResponseH1(c *pool.Conn, headReq bool) error {
	for {
		if err := http1.ReadResponse(c.BR, &a.resp); err != nil {
			return err
		}
		if a.resp.Status >= 200 || a.resp.Status == 101 {
			break
		}
		// Skip 100 Continue and other informational responses.
	}
	a.body.ForResponse(c.BR, &a.resp, headReq)
	return nil
}

// respond streams the attempt's upstream response downstream.
func (rt *router) respond() {
	if rt.up.h2resp != nil {
		rt.respondH2()
		return
	}
	e := rt.e
	resp := &rt.up.resp
	e.rec.Status = resp.Status
	if gs := rt.up.grpcStatus(); gs >= 0 {
		e.rec.GRPCStatus = gs
	}
	out := rt.outHdr[:0]
	for _, f := range resp.Headers {
		if http1.IsHopByHop(f.Name) || http1.EqualFold(f.Name, "content-length") {
			continue
		}
		out = append(out, f)
	}
	if e.upgrade != nil && resp.Status == 101 {
		out = append(out, http1.Header{Name: []byte("connection"), Value: []byte("upgrade")})
		if v, ok := resp.Headers.Get("upgrade"); ok {
			out = append(out, http1.Header{Name: []byte("upgrade"), Value: v})
		}
	}
	out = rt.decorateResponse(out)
	rt.outHdr = out
	n := int64(-1)
	switch {
	case resp.Status == 101:
		n = -2
	case !resp.BodyAllowed(e.headReq):
		n = resp.ContentLength
		if n < 0 || resp.Status == 204 || resp.Status == 304 {
			n = -2
		}
	case !resp.Chunked && resp.ContentLength >= 0:
		n = resp.ContentLength
	}
	e.headsSent = true
	if err := e.sink.writeHead(resp.Status, resp.Reason, out, n); err != nil {
		e.downstreamGone()
		rt.up.discard()
		return
	}
	if resp.Status == 101 && e.h1 != nil {
		e.h1.tunnel(rt.up.conn, e)
		return
	}
	if n == -2 || (!resp.BodyAllowed(e.headReq)) {
		e.sink.finish(nil)
		rt.up.finish(true, rt.requestSent())
		return
	}
	ok := e.copyBody(&rt.up.body, rt.up.conn.BR)
	if ok {
		e.sink.finish(rt.up.body.Trailers)
	}
	rt.up.finish(ok, rt.requestSent())
}

var (
	nameServiceTime = []byte("x-envoy-upstream-service-time")
	nameServer      = []byte("server")
)

// decorateResponse applies response header manipulation and Envoy's
// response headers.
func (rt *router) decorateResponse(out http1.Headers) http1.Headers {
	e, r, wc := rt.e, rt.r, rt.wc
	for _, ops := range [...]*route.HeaderOps{&wc.Headers, &r.Headers, &r.VHost.Headers} {
		if len(ops.RespRemove) > 0 {
			route.ApplyRemoves(&out, ops.RespRemove)
		}
		if len(ops.RespAdd) > 0 {
			route.ApplyAdds(&out, ops.RespAdd)
		}
	}
	e.filters.encode(&out)
	ms := e.m.now().Sub(rt.sent) / time.Millisecond
	out.SetB(nameServiceTime, strconv.AppendInt(rt.svcBuf[:0], int64(ms), 10))
	if e.cfg.ServerName != "" {
		out.SetB(nameServer, e.cfg.serverName)
	}
	return out
}

// copyBody streams an upstream body to the sink; it reports whether the
// whole body was read and written. buffered tells how many bytes the
// upstream reader holds (nil for HTTP/2) so that the sink is flushed only
// when the upstream has nothing more ready.
func (e *exchange) copyBody(src io.Reader, ubr interface{ Buffered() int }) bool {
	buf := e.copyBuf()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := e.sink.Write(buf[:n]); werr != nil {
				e.downstreamGone()
				return false
			}
			e.bodyOut += int64(n)
			if ubr == nil || ubr.Buffered() == 0 {
				if err == nil {
					e.sink.flush()
				}
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			if isTimeout(err) {
				e.rec.Flags |= FlagUT
				e.setDetails(e.rt.cl, true)
			} else {
				e.rec.Flags |= FlagUR
				e.setDetails(e.rt.cl, false)
			}
			e.sink.abort()
			return false
		}
	}
}

// requestSent reports whether the whole request went upstream.
func (rt *router) requestSent() bool {
	e := rt.e
	if e.body == nil || rt.buffered {
		return true
	}
	if b, ok := e.body.(*http1.Body); ok {
		return b.Done()
	}
	return false
}
