package httpconn

import (
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
func (a *attempt) sendH1(e *exchange, deadline time.Time) (outcome, int) {
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
		err = e.writeRequestH1(c)
		if err == nil {
			err = a.readResponseH1(c, e.headReq)
		}
		if err == nil {
			a.conn = c
			return okResponse, a.resp.Status
		}
		c.Close()
		if isTimeout(err) {
			return timedOut, 0
		}
		if c.Reused && staleConnError(err) && (e.buffered || !e.bodyTaken) {
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

func (e *exchange) writeRequestH1(c *pool.Conn) error {
	bw := c.BW
	bw.Write(e.q.Method)
	bw.WriteByte(' ')
	if len(e.path) == 0 {
		bw.WriteByte('/')
	} else {
		bw.Write(e.path)
	}
	bw.WriteString(" HTTP/1.1\r\n")
	if len(e.hostHdr) > 0 {
		http1.WriteFieldS(bw, "host", e.hostHdr)
	}
	for _, f := range e.q.Headers {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		http1.WriteField(bw, f.Name, f.Value)
	}
	if e.tmoBuf2 != nil {
		http1.WriteFieldS(bw, "x-envoy-expected-rq-timeout-ms", e.tmoBuf2)
	}
	if e.cntBuf2 != nil {
		http1.WriteFieldS(bw, "x-envoy-attempt-count", e.cntBuf2)
	}
	if e.upgrade != nil {
		bw.WriteString("connection: upgrade\r\n")
		http1.WriteFieldS(bw, "upgrade", e.upgrade)
	}
	chunked := false
	switch {
	case e.buffered:
		http1.WriteFieldS(bw, "content-length", strconv.AppendInt(e.numBuf[:0], int64(len(e.replay)), 10))
	case e.body == nil:
		if methodNeedsLength(e.q.Method) {
			bw.WriteString("content-length: 0\r\n")
		}
	case e.bodyLen >= 0:
		http1.WriteFieldS(bw, "content-length", strconv.AppendInt(e.numBuf[:0], e.bodyLen, 10))
	default:
		chunked = true
		bw.WriteString("transfer-encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	switch {
	case e.buffered:
		bw.Write(e.replay)
	case e.body != nil:
		e.bodyTaken = true
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
			e.limited = io.LimitedReader{R: e.body, N: e.bodyLen}
			n, err = io.CopyBuffer(bw, &e.limited, e.copyBuf())
			e.limited.R = nil
			if err == nil && n < e.bodyLen {
				err = io.ErrUnexpectedEOF
			}
		}
		e.rec.BytesReceived = n
		if err != nil {
			return err
		}
	}
	return bw.Flush()
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

// respond streams the upstream response downstream.
func (e *exchange) respond(r *route.Route, wc *route.WeightedCluster, corsHdrs [][2]string, sent time.Time) {
	if e.up.h2resp != nil {
		e.respondH2Upstream(r, wc, corsHdrs, sent)
		return
	}
	resp := &e.up.resp
	e.rec.Status = resp.Status
	if gs := e.up.grpcStatus(); gs >= 0 {
		e.rec.GRPCStatus = gs
	}
	out := e.outHdr[:0]
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
	out = e.decorateResponse(out, r, wc, corsHdrs, sent)
	e.outHdr = out
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
		e.rec.Flags |= FlagDC
		e.up.discard()
		return
	}
	if resp.Status == 101 && e.h1 != nil {
		e.h1.tunnel(e.up.conn, e)
		return
	}
	if n == -2 || (!resp.BodyAllowed(e.headReq)) {
		e.sink.finish(nil)
		e.up.finish(true, e.requestSent())
		return
	}
	ok := e.copyBody(&e.up.body, e.up.conn.BR)
	if ok {
		e.sink.finish(e.up.body.Trailers)
	}
	e.up.finish(ok, e.requestSent())
}

var (
	nameServiceTime = []byte("x-envoy-upstream-service-time")
	nameServer      = []byte("server")
)

// decorateResponse applies response header manipulation and Envoy's
// response headers.
func (e *exchange) decorateResponse(out http1.Headers, r *route.Route, wc *route.WeightedCluster, corsHdrs [][2]string, sent time.Time) http1.Headers {
	for _, ops := range [...]*route.HeaderOps{&wc.Headers, &r.Headers, &r.VHost.Headers} {
		if len(ops.RespRemove) > 0 {
			route.ApplyRemoves(&out, ops.RespRemove)
		}
		if len(ops.RespAdd) > 0 {
			route.ApplyAdds(&out, ops.RespAdd)
		}
	}
	for _, c := range corsHdrs {
		out.Set(c[0], []byte(c[1]))
	}
	ms := e.m.now().Sub(sent) / time.Millisecond
	out.SetB(nameServiceTime, strconv.AppendInt(e.svcBuf[:0], int64(ms), 10))
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
				e.rec.Flags |= FlagDC
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
			} else {
				e.rec.Flags |= FlagUR
			}
			e.sink.abort()
			return false
		}
	}
}

// requestSent reports whether the whole request went upstream.
func (e *exchange) requestSent() bool {
	if e.body == nil || e.buffered {
		return true
	}
	if b, ok := e.body.(*http1.Body); ok {
		return b.Done()
	}
	return false
}
