package httpconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// sendH2 sends the request as a stream on an HTTP/2 connection to the
// host (h2c, or HTTP/2 over the cluster's TLS).
func (a *attempt) sendH2(e *exchange, deadline time.Time) (outcome, int) {
	scheme := "http"
	if a.cl.HostTLS(a.host) {
		scheme = "https"
	}
	for again := true; ; again = false {
		var ctx context.Context
		var cancel context.CancelFunc
		if !deadline.IsZero() {
			ctx, cancel = context.WithDeadline(context.Background(), deadline)
		} else {
			ctx, cancel = context.WithCancel(context.Background())
		}
		req, err := e.buildH2Request(ctx, scheme, a.host.Address)
		if err != nil {
			cancel()
			return resetBeforeResponse, 0
		}
		cc, reused, err := a.cl.H2Conn(a.host, deadline)
		if err != nil {
			cancel()
			return a.connError(err)
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			cancel()
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return timedOut, 0
			}
			if again && reused && cc.Err() != nil && (e.body == nil || e.buffered) {
				// The server shut down (GOAWAY) or closed a connection
				// kept open before taking the stream: try once on a fresh
				// one, as for an HTTP/1.1 keep-alive connection.
				continue
			}
			return resetBeforeResponse, 0
		}
		a.h2resp, a.h2cancel = resp, cancel
		return okResponse, resp.StatusCode
	}
}

func (e *exchange) buildH2Request(ctx context.Context, scheme, addr string) (*http.Request, error) {
	p := string(e.path)
	if p == "" {
		p = "/"
	}
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return nil, err
	}
	u.Scheme, u.Host = scheme, addr
	// All values go into one string and one []string backing array: a few
	// allocations per request instead of two per header.
	size := 0
	for _, f := range e.q.Headers {
		size += len(f.Value)
	}
	all := make([]byte, 0, size)
	for _, f := range e.q.Headers {
		all = append(all, f.Value...)
	}
	allS := string(all)
	vals := make([]string, len(e.q.Headers))
	hdr := make(http.Header, len(e.q.Headers)+2)
	off := 0
	for i, f := range e.q.Headers {
		v := allS[off : off+len(f.Value)]
		off += len(f.Value)
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		k := keyString(f.Name)
		vals[i] = v
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev, v)
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	if e.tmoBuf2 != nil {
		hdr["x-envoy-expected-rq-timeout-ms"] = []string{string(e.tmoBuf2)}
	}
	if e.cntBuf2 != nil {
		hdr["x-envoy-attempt-count"] = []string{string(e.cntBuf2)}
	}
	req := (&http.Request{
		Method:     string(e.q.Method),
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     hdr,
		Host:       string(e.hostHdr),
	}).WithContext(ctx)
	switch {
	case e.buffered:
		req.Body = io.NopCloser(bytes.NewReader(e.replay))
		req.ContentLength = int64(len(e.replay))
	case e.body != nil:
		e.bodyTaken = true
		e.foldH2Body()
		e.up.h2body = &countingBody{r: e.body}
		req.Body = e.up.h2body
		req.ContentLength = e.bodyLen
		if req.ContentLength == 0 {
			req.ContentLength = -1
		}
	default:
		req.Body = http.NoBody
	}
	return req, nil
}

// countingBody counts the request body bytes the HTTP/2 transport sends.
// It is allocated per attempt and never pooled: the transport's writer
// goroutine may still read it after the exchange is done.
type countingBody struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// foldH2Body adds the bytes counted for the last HTTP/2 attempt to the
// record.
func (e *exchange) foldH2Body() {
	if b := e.up.h2body; b != nil {
		e.rec.BytesReceived += b.n.Load()
		e.up.h2body = nil
	}
}

func (c *countingBody) Close() error { return nil }

func (e *exchange) respondH2Upstream(r *route.Route, wc *route.WeightedCluster, corsHdrs [][2]string, sent time.Time) {
	resp := e.up.h2resp
	defer e.up.discard()
	e.rec.Status = resp.StatusCode
	out := e.outHdr[:0]
	for k, vs := range resp.Header {
		lk := lowerName(k)
		if http1.IsHopByHop(lk) || string(lk) == "content-length" {
			continue
		}
		for _, v := range vs {
			// resp.Header's strings are immutable: view them as bytes.
			out = append(out, http1.Header{Name: lk, Value: stringBytes(v)})
		}
	}
	if s := resp.Header.Get("grpc-status"); s != "" {
		e.rec.GRPCStatus = atoiOr(s, -1)
	}
	if len(resp.Trailer) > 0 && !e.h2 && resp.ContentLength < 0 {
		// Announce the trailers for HTTP/1.1 clients (the transport took
		// the Trailer field out of the header).
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, strings.ToLower(k))
		}
		out = append(out, http1.Header{Name: []byte("trailer"), Value: []byte(strings.Join(names, ", "))})
	}
	out = e.decorateResponse(out, r, wc, corsHdrs, sent)
	e.outHdr = out
	n := resp.ContentLength
	if e.headReq || resp.StatusCode == 204 || resp.StatusCode == 304 {
		if n < 0 {
			n = -2
		}
	}
	e.headsSent = true
	if err := e.sink.writeHead(resp.StatusCode, nil, out, n); err != nil {
		e.rec.Flags |= FlagDC
		return
	}
	if n == -2 || e.headReq {
		e.sink.finish(nil)
		return
	}
	if !e.copyBody(resp.Body, nil) {
		return
	}
	var tr http1.Headers
	for k, vs := range resp.Trailer {
		lk := lowerName(k)
		for _, v := range vs {
			tr = append(tr, http1.Header{Name: lk, Value: stringBytes(v)})
		}
		if string(lk) == "grpc-status" && len(vs) > 0 {
			e.rec.GRPCStatus = atoiOr(vs[0], -1)
		}
	}
	e.sink.finish(tr)
}

func atoiOr(s string, def int) int {
	n := 0
	if s == "" {
		return def
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return def
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// mirror sends a copy of the request to each mirror cluster that samples
// it, and discards the answers. Only bodiless or buffered requests are
// mirrored.
func (e *exchange) mirror(r *route.Route) {
	for _, mp := range r.Mirrors {
		if !mp.Fraction.Hit(e.m.rand()) {
			continue
		}
		cl := e.m.Clusters.Get(mp.Cluster)
		if cl == nil {
			continue
		}
		shadow := &exchange{m: e.m, cfg: e.cfg, info: e.info, sink: discardSink{}}
		shadow.reset()
		shadow.q.Method = append([]byte(nil), e.q.Method...)
		shadow.path = append([]byte(nil), r.RewritePath(nil, e.q.Path)...)
		if len(shadow.path) == 0 {
			shadow.path = append([]byte(nil), e.q.Path...)
		}
		shadow.hostHdr = shadowHost(e.q.Authority)
		for _, f := range e.q.Headers {
			shadow.q.Headers = append(shadow.q.Headers, http1.Header{Name: append([]byte(nil), f.Name...), Value: append([]byte(nil), f.Value...)})
		}
		if e.buffered {
			shadow.replay = append([]byte(nil), e.replay...)
			shadow.buffered = true
		}
		shadow.headReq = e.headReq
		go shadow.sendMirror(cl)
	}
}

// shadowHost appends "-shadow" to the host part of an authority, as Envoy
// does for mirrored requests.
func shadowHost(a []byte) []byte {
	s := string(a)
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
		host, port = s[:i], s[i:]
	}
	return []byte(host + "-shadow" + port)
}

func (e *exchange) sendMirror(cl *cluster.Cluster) {
	defer e.release()
	host, err := cl.Pick(&lb.Context{})
	if err != nil || host == nil {
		return
	}
	deadline := e.m.now().Add(route.DefaultTimeout)
	res, status := e.up.send(e, cl, host, deadline)
	if res == overflowed {
		return
	}
	cl.Report(host, reportOf(res, status))
	if res != okResponse {
		return
	}
	if e.up.h2resp != nil {
		io.Copy(io.Discard, e.up.h2resp.Body)
		e.up.discard()
		return
	}
	e.up.finish(e.up.body.Discard(1<<30), true)
}

// discardSink swallows a response (mirrors).
type discardSink struct{}

func (discardSink) writeHead(int, []byte, http1.Headers, int64) error { return nil }
func (discardSink) Write(p []byte) (int, error)                       { return len(p), nil }
func (discardSink) flush() error                                      { return nil }
func (discardSink) finish(http1.Headers) error                        { return nil }
func (discardSink) abort()                                            {}
