package httpconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

// sendH2 sends the request as a stream on an HTTP/2 connection to the
// host (h2c, or HTTP/2 over the cluster's TLS).
func (a *attempt) sendH2(rt *router, deadline time.Time) (outcome, int) {
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
		// The connection first: the request takes the downstream body
		// (which then cannot be replayed), so a failed connect must leave
		// it untouched for the retry to another host.
		cc, reused, err := a.cl.H2Conn(a.host, deadline)
		if err != nil {
			cancel()
			return a.connError(err)
		}
		req, err := rt.buildH2Request(ctx, scheme, a.host.Address)
		if err != nil {
			cancel()
			return resetBeforeResponse, 0
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			cancel()
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return timedOut, 0
			}
			if again && reused && cc.Err() != nil && (rt.e.body == nil || rt.buffered) {
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

// buildH2Request makes the upstream request for the HTTP/2 transport.
func (rt *router) buildH2Request(ctx context.Context, scheme, addr string) (*http.Request, error) {
	e := rt.e
	p := string(rt.path)
	if p == "" {
		p = "/"
	}
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return nil, err
	}
	u.Scheme, u.Host = scheme, addr
	req := (&http.Request{
		Method:     string(e.q.Method),
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     rt.h2Header(),
		Host:       string(rt.hostHdr),
	}).WithContext(ctx)
	switch {
	case rt.buffered:
		req.Body = io.NopCloser(bytes.NewReader(rt.replay))
		req.ContentLength = int64(len(rt.replay))
	case e.body != nil:
		if b, ok := e.body.(*http1.Body); ok {
			// The transport reads the body on its own goroutine: the
			// "100 Continue" for it goes out from this one.
			b.SendContinue()
		}
		rt.bodyTaken = true
		rt.foldH2Body()
		rt.up.h2body = &countingBody{r: e.body}
		if rt.resume != nil {
			// A retry of a body that had not all come: what the last
			// attempt read, then the rest as it arrives.
			rt.up.h2body.r = io.MultiReader(bytes.NewReader(rt.resume), e.body)
			rt.up.h2body.replayed = int64(len(rt.resume))
			rt.resume = nil
		}
		if rt.retry.enabled && rt.retry.left > 0 {
			// Like Envoy's retry buffer: a body of unknown length is
			// copied while it streams (up to maxReplayBody), so that a
			// retry can send it again.
			rt.replay = rt.replay[:0]
			rt.up.h2body.keep = &rt.replay
		}
		req.Body = rt.up.h2body
		req.ContentLength = e.bodyLen
		if req.ContentLength == 0 {
			req.ContentLength = -1
		}
	default:
		req.Body = http.NoBody
	}
	return req, nil
}

// h2Header renders the upstream request's header fields for the HTTP/2
// transport.
func (rt *router) h2Header() http.Header {
	e := rt.e
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
	if rt.timeoutHdr != nil {
		hdr["x-envoy-expected-rq-timeout-ms"] = []string{string(rt.timeoutHdr)}
	}
	if rt.countHdr != nil {
		hdr["x-envoy-attempt-count"] = []string{string(rt.countHdr)}
	}
	return hdr
}

// countingBody counts the request body bytes the HTTP/2 transport sends.
// It is allocated per attempt and never pooled: the transport's writer
// goroutine may still read it after the exchange is done, and then gets
// errBodyTaken once the exchange took the body back (stop).
type countingBody struct {
	r       io.Reader
	n       atomic.Int64
	mu      sync.Mutex // held during each read of r
	stopped bool
	// keep, when set, receives a copy of what is read, up to
	// maxReplayBody (over past it), for a retry to replay; eof is set
	// once r is exhausted. They are read only after stop.
	keep      *[]byte
	over, eof bool
	// replayed is how much of r was sent by an earlier attempt already
	// (not counted again in the request's bytes).
	replayed int64
}

var errBodyTaken = errors.New("request body no longer available to this attempt")

func (c *countingBody) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return 0, errBodyTaken
	}
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if c.keep != nil && !c.over {
		if len(*c.keep)+n > maxReplayBody {
			c.over = true
		} else {
			*c.keep = append(*c.keep, p[:n]...)
		}
	}
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// stop ends the transport's reads of the body. A read in progress is
// woken with wake (which breaks a read blocked on the downstream
// connection); stop reports whether that was needed.
func (c *countingBody) stop(wake func()) (woke bool) {
	if !c.mu.TryLock() {
		if wake != nil {
			wake()
			woke = true
		}
		c.mu.Lock()
	}
	c.stopped = true
	c.mu.Unlock()
	return woke
}

// foldH2Body takes the request body back from the last HTTP/2 attempt and
// adds the bytes it sent to the record. An HTTP/1.1 downstream connection
// is only read again after this.
func (rt *router) foldH2Body() {
	e := rt.e
	if b := rt.up.h2body; b != nil {
		if e.h1 != nil {
			if b.stop(e.h1.wakeBodyRead) {
				e.h1.bodyInterrupted()
			}
		} else {
			b.stop(nil)
		}
		e.rec.BytesReceived += max(b.n.Load()-b.replayed, 0)
		rt.up.h2body = nil
	}
}

func (c *countingBody) Close() error { return nil }

// replayKept takes the body back from the last HTTP/2 attempt and
// readies what the next one sends, when that attempt kept all it read
// (within maxReplayBody): the whole body (rt.buffered) once it had been
// read to its end, else, for an HTTP/2 downstream, the kept part followed
// by the rest of the downstream body (rt.resume), as Envoy's retry of a
// request still streaming. It reports whether the body can be sent again.
func (rt *router) replayKept() bool {
	b := rt.up.h2body
	if b == nil || b.keep == nil {
		return false
	}
	rt.foldH2Body()
	switch {
	case b.over:
		return false
	case b.eof:
		rt.buffered = true
		return true
	case rt.e.h1 == nil:
		// Copied: the next attempt keeps into rt.replay again while it
		// reads this. (A retry is rare; the copy is its only allocation.)
		rt.resume = append([]byte{}, rt.replay...)
		return true
	}
	// An HTTP/1.1 downstream's body read was interrupted to take it back:
	// it cannot be continued.
	return false
}

// respondH2 streams the attempt's HTTP/2 upstream response downstream.
func (rt *router) respondH2() {
	e := rt.e
	resp := rt.up.h2resp
	defer rt.up.discard()
	e.rec.Status = resp.StatusCode
	out := rt.outHdr[:0]
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
	out = rt.decorateResponse(out)
	rt.outHdr = out
	n := resp.ContentLength
	if e.headReq || resp.StatusCode == 204 || resp.StatusCode == 304 {
		if n < 0 {
			n = -2
		}
	}
	e.headsSent = true
	if err := e.sink.writeHead(resp.StatusCode, nil, out, n); err != nil {
		e.downstreamGone()
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
