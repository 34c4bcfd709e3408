package httpconn

import (
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// attemptH1 sends the request on a pooled HTTP/1.1 connection and reads
// the response head. On okResponse e.uc holds the connection and
// e.resp/e.ubody the response.
func (e *exchange) attemptH1(cl *cluster.Cluster, host *lb.Host, deadline time.Time) (outcome, int) {
	fresh := false
	for {
		var c *pool.Conn
		var err error
		if fresh {
			c, err = e.m.Pool.Dial(host.Address, cl.UpstreamBindSource, cl.ConnectTimeout)
		} else {
			c, err = e.m.Pool.Get(host.Address, cl.UpstreamBindSource, cl.ConnectTimeout)
		}
		if err != nil {
			return connectFailed, 0
		}
		if !c.Reused {
			host.CxTotal.Add(1)
			if s := cl.Stats; s != nil && s.UpstreamCxTotal != nil {
				s.UpstreamCxTotal.Inc()
			}
		}
		if !deadline.IsZero() {
			c.SetDeadline(deadline)
		}
		c.Requests++
		err = e.writeRequestH1(c)
		if err == nil {
			err = e.readResponseH1(c)
		}
		if err == nil {
			e.uc = c
			return okResponse, e.resp.Status
		}
		e.m.Pool.Discard(c)
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

func (e *exchange) readResponseH1(c *pool.Conn) error {
	for {
		if err := http1.ReadResponse(c.BR, &e.resp); err != nil {
			return err
		}
		if e.resp.Status >= 200 || e.resp.Status == 101 {
			break
		}
		// Skip 100 Continue and other informational responses.
	}
	e.ubody.ForResponse(c.BR, &e.resp, e.headReq)
	return nil
}

// upstreamGRPCStatus returns the grpc-status of a response head, or -1.
func (e *exchange) upstreamGRPCStatus() int {
	var v []byte
	var ok bool
	if e.h2resp != nil {
		if s := e.h2resp.Header.Get("grpc-status"); s != "" {
			v, ok = []byte(s), true
		}
	} else {
		v, ok = e.resp.Headers.Get("grpc-status")
	}
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return -1
	}
	return n
}

// abandonResponse drops a response that is being retried.
func (e *exchange) abandonResponse() {
	if e.h2resp != nil {
		e.h2resp.Body.Close()
		e.h2resp = nil
		e.cancelH2()
		return
	}
	if e.uc != nil {
		if !e.resp.Close && e.ubody.Discard(maxReplayBody) && !e.ubody.UntilEOF() {
			e.m.Pool.Put(e.uc)
		} else {
			e.m.Pool.Discard(e.uc)
		}
		e.uc = nil
	}
}

// respond streams the upstream response downstream.
func (e *exchange) respond(r *route.Route, wc *route.WeightedCluster, sent time.Time) {
	if e.h2resp != nil {
		e.respondH2Upstream(r, wc, sent)
		return
	}
	resp := &e.resp
	e.rec.Status = resp.Status
	if gs := e.upstreamGRPCStatus(); gs >= 0 {
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
	out = e.decorateResponse(out, r, wc, sent)
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
		e.m.Pool.Discard(e.uc)
		e.uc = nil
		return
	}
	if resp.Status == 101 && e.h1 != nil {
		uc := e.uc
		e.uc = nil
		e.h1.tunnel(uc, e)
		return
	}
	if n == -2 || (!resp.BodyAllowed(e.headReq)) {
		e.sink.finish(nil)
		e.finishUpstream(true)
		return
	}
	ok := e.copyBody(&e.ubody, e.uc.BR)
	if ok {
		e.sink.finish(e.ubody.Trailers)
	}
	e.finishUpstream(ok)
}

var (
	nameServiceTime = []byte("x-envoy-upstream-service-time")
	nameServer      = []byte("server")
)

// decorateResponse applies response header manipulation and Envoy's
// response headers.
func (e *exchange) decorateResponse(out http1.Headers, r *route.Route, wc *route.WeightedCluster, sent time.Time) http1.Headers {
	for _, ops := range [...]*route.HeaderOps{&wc.Headers, &r.Headers, &r.VHost.Headers} {
		if len(ops.RespRemove) > 0 {
			route.ApplyRemoves(&out, ops.RespRemove)
		}
		if len(ops.RespAdd) > 0 {
			route.ApplyAdds(&out, ops.RespAdd)
		}
	}
	e.filters.encode(&out)
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

// finishUpstream returns or closes the upstream connection.
func (e *exchange) finishUpstream(ok bool) {
	if e.uc == nil {
		return
	}
	maxed := false
	if cl := e.rec.Cluster; cl != nil && cl.MaxRequestsPerConnection > 0 && e.uc.Requests >= int(cl.MaxRequestsPerConnection) {
		maxed = true // max_requests_per_connection reached
	}
	if ok && !maxed && e.ubody.Done() && !e.resp.Close && !e.ubody.UntilEOF() && (e.body == nil || e.buffered || e.bodyFullySent()) {
		e.m.Pool.Put(e.uc)
	} else {
		e.m.Pool.Discard(e.uc)
	}
	e.uc = nil
}

func (e *exchange) bodyFullySent() bool {
	if b, ok := e.body.(*http1.Body); ok {
		return b.Done()
	}
	return false
}
