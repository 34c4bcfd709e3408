package httpconn

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// Request headers that steer the router; honoured when trusted and never
// forwarded upstream.
var envoyControlHeaders = [...]string{
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-max-retries",
	"x-envoy-retry-on",
	"x-envoy-retry-grpc-on",
	"x-envoy-retriable-status-codes",
	"x-envoy-expected-rq-timeout-ms",
}

var nameOriginalPath = []byte("x-envoy-original-path")

// router is the terminal HTTP filter's state for one request (Envoy's
// router): the route and cluster picked, the timeouts, the retry budget,
// the hosts tried, the upstream request's path, host and x-envoy-*
// headers, the body kept for replay, and the attempt in flight. It lives
// inside its exchange and is reused with it; the exchange keeps the
// downstream side (request, sink, record, local replies).
type router struct {
	e  *exchange
	r  *route.Route
	wc *route.WeightedCluster
	cl *cluster.Cluster

	timeout  time.Duration // the request's timeout, 0 for none
	deadline time.Time     // when the timeout ends, zero for none
	retry    retryState
	// retryRelease gives back the retry circuit breaker slot held for
	// the attempt in flight, or is nil.
	retryRelease func()
	tried        []*lb.Host
	lbctx        lb.Context

	// The upstream request: path (it may alias the downstream request's
	// buffer; rewrites go to pathBuf), host header, and the
	// x-envoy-expected-rq-timeout-ms and x-envoy-attempt-count values
	// (nil when not sent), with their buffers.
	path       []byte
	pathBuf    []byte
	hostHdr    []byte
	timeoutHdr []byte
	countHdr   []byte
	tmoBuf     [20]byte
	cntBuf     [20]byte
	numBuf     [20]byte
	limited    io.LimitedReader

	// The request body: replay holds it when buffered for retries and
	// mirrors; bodyTaken is set once part of a streamed body went
	// upstream (the request cannot be replayed then).
	replay    []byte
	buffered  bool
	bodyTaken bool
	// resume, set for a retry of a body still streaming, is what the
	// previous attempt read of it: sent first, then the rest.
	resume []byte

	// up is the current upstream attempt, sent at sent.
	up     attempt
	sent   time.Time
	outHdr http1.Headers
	svcBuf [20]byte
}

// reset readies the router of e for a new request.
func (rt *router) reset(e *exchange) {
	rt.e = e
	rt.replay, rt.buffered, rt.bodyTaken, rt.resume = rt.replay[:0], false, false, nil
	rt.tried = rt.tried[:0]
	rt.lbctx = lb.Context{}
	rt.up.conn, rt.up.h2resp, rt.up.h2cancel, rt.up.h2body = nil, nil, nil, nil
	rt.timeoutHdr, rt.countHdr = nil, nil
	rt.r, rt.wc, rt.cl = nil, nil, nil
}

// pickCluster resolves route r's weighted cluster and looks the cluster
// up, recording both; serve uses the result.
func (rt *router) pickCluster(r *route.Route) {
	e := rt.e
	rt.r, rt.wc, rt.cl = r, r.PickCluster(), nil
	if rt.wc == nil {
		return
	}
	e.rec.ClusterName = rt.wc.Name
	rt.cl = e.m.Clusters.Get(rt.wc.Name)
	e.rec.Cluster = rt.cl
}

// serve is the terminal filter: redirects and direct responses, the
// cluster pick, then forwarding. r is nil when no route matched.
func (rt *router) serve(r *route.Route) {
	e := rt.e
	if r == nil {
		details := respdetail.RouteNotFound
		if rc := e.cfg.Routes.Load(); rc != nil {
			details = rc.NoRouteDetails(&e.q)
		}
		e.localReply(404, "", FlagNR, details, nil)
		return
	}
	switch r.Action {
	case route.ActionRedirect:
		loc := r.Redirect.Location(r, e.q.Scheme, e.q.Authority, e.q.Path)
		code := r.Redirect.Code
		if code == 0 {
			code = 301
		}
		e.localReply(code, "", 0, r.Reasons.Direct, [][2]string{{"location", loc}})
		return
	case route.ActionDirect:
		e.localReply(r.Status, r.Body, 0, r.Reasons.Direct, nil)
		return
	}
	if rt.r != r {
		rt.pickCluster(r)
	}
	wc, cl := rt.wc, rt.cl
	if wc == nil {
		e.localReply(503, "", FlagNC, respdetail.ClusterNotFound, nil)
		return
	}
	if cl == nil {
		e.localReply(503, "", FlagNC, wc.NotFound, nil)
		return
	}
	if e.upgrade != nil && !e.cfg.upgradeAllowed(e.upgrade, r) {
		e.localReply(403, bodyUpgradeRej, 0, r.Reasons.UpgradeFailed, nil)
		return
	}
	rt.forward()
}

// forward sends the request to the cluster: timeouts, retry settings,
// header manipulation, body buffering and mirrors, then the attempts.
func (rt *router) forward() {
	e := rt.e
	defer rt.done()
	rt.setTimeout()
	rt.retry = rt.retrySettings()
	rt.rewriteRequest()
	if err := rt.keepBody(); err != nil {
		e.localReply(400, "", FlagDPE, respdetail.DownstreamProtocolErr, nil)
		return
	}
	if len(rt.r.Mirrors) > 0 && (e.body == nil || rt.buffered) {
		rt.mirror()
	}
	rt.setLBContext()
	start := e.m.now()
	rt.deadline = time.Time{}
	if rt.timeout > 0 {
		rt.deadline = start.Add(rt.timeout)
	}
	rt.tryHosts()
}

// done ends the router's part of the request: the retry slot is given
// back and the config it used is let go.
func (rt *router) done() {
	rt.releaseRetry()
	rt.r, rt.wc, rt.cl = nil, nil, nil
}

func (rt *router) releaseRetry() {
	if rt.retryRelease != nil {
		rt.retryRelease()
		rt.retryRelease = nil
	}
}

// setTimeout takes the route's timeout, or a trusted
// x-envoy-upstream-rq-timeout-ms, and renders the
// x-envoy-expected-rq-timeout-ms sent upstream.
func (rt *router) setTimeout() {
	e := rt.e
	rt.timeout = rt.r.Timeout
	if e.trusted {
		if n, ok := e.headerInt("x-envoy-upstream-rq-timeout-ms"); ok {
			rt.timeout = time.Duration(n) * time.Millisecond
		}
	}
	rt.timeoutHdr = nil
	if rt.timeout > 0 {
		rt.timeoutHdr = strconv.AppendInt(rt.tmoBuf[:0], int64(rt.timeout/time.Millisecond), 10)
	}
}

// effective retry settings of one request.
type retryState struct {
	policy  route.RetryPolicy
	enabled bool
	left    int
}

// retrySettings merges the route's retry policy with trusted x-envoy-*
// retry headers.
func (rt *router) retrySettings() retryState {
	e := rt.e
	var rs retryState
	if rt.r.Retry != nil {
		rs.policy, rs.enabled = *rt.r.Retry, true
	}
	if e.trusted {
		if v, ok := e.q.Headers.Get("x-envoy-retry-on"); ok {
			if on, err := route.ParseRetryOn(string(v), ""); err == nil {
				if !rs.enabled {
					rs.policy = route.RetryPolicy{NumRetries: 1, BaseInterval: 25 * time.Millisecond, MaxInterval: 250 * time.Millisecond}
					rs.enabled = true
				}
				rs.policy.On |= on
			}
		}
		if v, ok := e.q.Headers.Get("x-envoy-retry-grpc-on"); ok && rs.enabled {
			if on, err := route.ParseRetryOn(string(v), ""); err == nil {
				rs.policy.On |= on
			}
		}
		if n, ok := e.headerInt("x-envoy-max-retries"); ok && rs.enabled {
			rs.policy.NumRetries = int(n)
		}
		if n, ok := e.headerInt("x-envoy-upstream-rq-per-try-timeout-ms"); ok && rs.enabled {
			rs.policy.PerTryTimeout = time.Duration(n) * time.Millisecond
		}
	}
	if rs.enabled {
		rs.left = rs.policy.NumRetries
	}
	return rs
}

// rewriteRequest drops the router's control headers, applies the virtual
// host's, route's and cluster's request header operations, and sets the
// upstream path and host.
func (rt *router) rewriteRequest() {
	e, r, wc := rt.e, rt.r, rt.wc
	for _, n := range envoyControlHeaders {
		e.q.Headers.Del(n)
	}
	h := &e.q.Headers
	for _, ops := range [...]*route.HeaderOps{&r.VHost.Headers, &r.Headers, &wc.Headers} {
		if len(ops.ReqRemove) > 0 {
			route.ApplyRemoves(h, ops.ReqRemove)
		}
		if len(ops.ReqAdd) > 0 {
			route.ApplyAdds(h, ops.ReqAdd)
		}
	}
	if v, ok := h.Get(":authority"); ok {
		e.q.Authority = v
		h.Del(":authority")
	}
	rt.path = r.RewritePath(rt.pathBuf[:0], e.q.Path)
	if len(rt.path) > 0 && (len(e.q.Path) == 0 || &rt.path[0] != &e.q.Path[0]) {
		rt.pathBuf = rt.path[:0]
		// Envoy keeps the path the client sent for logs and the upstream.
		h.SetB(nameOriginalPath, e.q.Path)
	}
	rt.hostHdr = e.q.Authority
	if wc.HostRewrite != "" {
		rt.hostHdr = []byte(wc.HostRewrite)
	} else if r.HostRewrite != "" {
		rt.hostHdr = []byte(r.HostRewrite)
	}
}

// keepBody reads a small body fully when retries or mirrors may replay
// it.
func (rt *router) keepBody() error {
	e := rt.e
	if e.body == nil || e.bodyLen <= 0 || e.bodyLen > maxReplayBody || !(rt.retry.enabled || len(rt.r.Mirrors) > 0) {
		return nil
	}
	if cap(rt.replay) < int(e.bodyLen) {
		rt.replay = make([]byte, e.bodyLen)
	}
	rt.replay = rt.replay[:e.bodyLen]
	n, err := io.ReadFull(e.body, rt.replay)
	if err != nil {
		return err
	}
	rt.replay = rt.replay[:n]
	rt.buffered = true
	e.rec.BytesReceived = int64(n)
	return nil
}

// setLBContext fills what the load balancer picks by: the route's hash,
// the original destination, and whether to avoid hosts already tried.
func (rt *router) setLBContext() {
	e := rt.e
	if len(rt.r.Hash) > 0 {
		if k := rt.r.HashKey(&e.q, []byte(addrString(e.info.Remote))); k != 0 {
			rt.lbctx.Hash, rt.lbctx.HasHash = k, true
		}
	}
	rt.lbctx.OriginalDst = e.info.OriginalDst
	rt.lbctx.AvoidTried = rt.retry.policy.PreviousHosts
}

// tryHosts makes attempts until one is not retried, and answers with
// what it produced.
func (rt *router) tryHosts() {
	for n := 1; ; n++ {
		deadline, perTry := rt.tryDeadline()
		res, status, answered := rt.try(n, deadline)
		if answered {
			return
		}
		if rt.retryAfter(n, res, status, perTry) {
			continue
		}
		rt.reply(res)
		return
	}
}

// tryDeadline is the deadline of the next attempt: the request's, or the
// per-try timeout when that ends first (perTry).
func (rt *router) tryDeadline() (deadline time.Time, perTry bool) {
	deadline = rt.deadline
	if rs := &rt.retry; rs.enabled && rs.policy.PerTryTimeout > 0 {
		if d := rt.e.m.now().Add(rs.policy.PerTryTimeout); deadline.IsZero() || d.Before(deadline) {
			return d, true
		}
	}
	return deadline, false
}

// try makes attempt n on a host the cluster picks, under the cluster's
// circuit breakers. answered reports that the request got a local reply
// instead (no host, overflow, a broken request body).
func (rt *router) try(n int, deadline time.Time) (res outcome, status int, answered bool) {
	e, cl := rt.e, rt.cl
	e.rec.Attempts = n
	host, ok := rt.pick()
	if !ok {
		return 0, 0, true
	}
	release, ok := cl.TryRequest()
	if !ok {
		e.localReply(503, bodyOverflow, FlagUO, cl.Reasons.MaxRequests, nil)
		return 0, 0, true
	}
	if rt.r.VHost.IncludeAttemptCount {
		rt.countHdr = strconv.AppendInt(rt.cntBuf[:0], int64(n), 10)
	}
	host.StartRequest()
	rt.sent = e.m.now()
	res, status = rt.up.send(rt, cl, host, deadline)
	host.EndRequest()
	release()
	rt.releaseRetry()
	switch res {
	case overflowed:
		// max_connections and max_pending_requests reached: the request
		// never reached the host.
		e.localReply(503, bodyOverflow, FlagUO, cl.Reasons.PendingOverflow, nil)
		return res, status, true
	case downstreamFailed:
		// Not the host's fault: the upstream request is reset, the client
		// gets 400 and its connection closes, as in Envoy.
		if e.h1 != nil {
			e.h1.closeAfter = true
		}
		e.localReply(400, "", FlagDPE, respdetail.DownstreamProtocolErr, nil)
		return res, status, true
	}
	rt.tried = append(rt.tried, host)
	cl.Report(host, reportOf(res, status))
	e.rec.UpstreamDuration = e.m.now().Sub(rt.sent)
	return res, status, false
}

// pick asks the cluster for a host; when there is none, the request gets
// its 503.
func (rt *router) pick() (*lb.Host, bool) {
	e := rt.e
	rt.lbctx.Tried = rt.tried
	host, err := rt.cl.Pick(&rt.lbctx)
	if err != nil || host == nil {
		if errors.Is(err, cluster.ErrNoOriginalDst) {
			e.localReply(503, bodyConnFail, FlagUF, rt.cl.Reasons.NoOriginalDst, nil)
			return nil, false
		}
		e.localReply(503, bodyNoHealthy, FlagUH, rt.cl.Reasons.NoHealthy, nil)
		return nil, false
	}
	e.rec.Host = host
	return host, true
}

// retryAfter decides whether attempt n, which produced res, is retried;
// if so it takes the retry circuit breaker's slot and backs off first.
// A retry the budget or an unreplayable body forbids is flagged URX.
func (rt *router) retryAfter(n int, res outcome, status int, perTry bool) bool {
	e, rs := rt.e, &rt.retry
	retry := rt.retriable(res, status, perTry)
	canReplay := !rt.bodyTaken || rt.buffered || (retry && rt.replayKept())
	if retry && rs.left > 0 && canReplay && (rt.deadline.IsZero() || e.m.now().Before(rt.deadline)) {
		if rel, ok := rt.cl.TryRetry(); ok {
			rt.retryRelease = rel
			rs.left--
			if res == okResponse {
				rt.up.abandon()
			}
			rt.backOff(n)
			return true
		}
	}
	if retry && (rs.left == 0 || !canReplay) && rs.enabled {
		e.rec.Flags |= FlagURX
	}
	return false
}

// retriable reports whether the retry policy asks for another attempt
// after res.
func (rt *router) retriable(res outcome, status int, perTry bool) bool {
	rs := &rt.retry
	switch res {
	case okResponse:
		return rs.enabled && rs.policy.RetryStatus(status, rt.up.grpcStatus())
	case connectFailed:
		return rs.enabled && rs.policy.RetryConnectFailure()
	case timedOut:
		return perTry && rs.enabled && rs.policy.RetryTimeout()
	case resetBeforeResponse:
		return rs.enabled && rs.policy.RetryReset()
	}
	return false
}

// backOff sleeps before retry n, never past the request's deadline.
func (rt *router) backOff(n int) {
	m := rt.e.m
	if d := rt.retry.policy.BackOff(n, m.rand()); d > 0 {
		if !rt.deadline.IsZero() && m.now().Add(d).After(rt.deadline) {
			d = rt.deadline.Sub(m.now())
		}
		m.sleep(d)
	}
}

// reply answers the request with the last attempt's outcome: the
// upstream response, or Envoy's local reply for the failure.
func (rt *router) reply(res outcome) {
	e := rt.e
	switch res {
	case connectFailed:
		body := bodyConnFail
		if rt.up.failure != "" {
			e.rec.TransportFailure = rt.up.failure
			body += ", transport failure reason: " + rt.up.failure
		}
		e.localReply(503, body, FlagUF, rt.cl.Reasons.ConnectFailure, nil)
	case timedOut:
		e.localReply(504, bodyTimeout, FlagUT, rt.cl.Reasons.Timeout, nil)
	case resetBeforeResponse:
		e.localReply(503, bodyConnTerm, FlagUC, rt.cl.Reasons.Termination, nil)
	case okResponse:
		rt.respond()
	}
}

// mirror sends a copy of the request to each mirror cluster that samples
// it, and discards the answers. Only bodiless or buffered requests are
// mirrored.
func (rt *router) mirror() {
	e := rt.e
	for _, mp := range rt.r.Mirrors {
		if !mp.Fraction.Hit(e.m.rand()) {
			continue
		}
		cl := e.m.Clusters.Get(mp.Cluster)
		if cl == nil {
			continue
		}
		shadow := &exchange{m: e.m, cfg: e.cfg, info: e.info, sink: discardSink{}}
		shadow.reset()
		srt := &shadow.rt
		shadow.q.Method = append([]byte(nil), e.q.Method...)
		srt.path = append([]byte(nil), rt.r.RewritePath(nil, e.q.Path)...)
		if len(srt.path) == 0 {
			srt.path = append([]byte(nil), e.q.Path...)
		}
		srt.hostHdr = shadowHost(e.q.Authority)
		for _, f := range e.q.Headers {
			shadow.q.Headers = append(shadow.q.Headers, http1.Header{Name: append([]byte(nil), f.Name...), Value: append([]byte(nil), f.Value...)})
		}
		if rt.buffered {
			srt.replay = append([]byte(nil), rt.replay...)
			srt.buffered = true
		}
		shadow.headReq = e.headReq
		go srt.sendMirror(cl)
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

// sendMirror makes the one attempt of a mirrored request and drops the
// response.
func (rt *router) sendMirror(cl *cluster.Cluster) {
	e := rt.e
	defer e.release()
	host, err := cl.Pick(&lb.Context{})
	if err != nil || host == nil {
		return
	}
	deadline := e.m.now().Add(route.DefaultTimeout)
	res, status := rt.up.send(rt, cl, host, deadline)
	if res == overflowed {
		return
	}
	cl.Report(host, reportOf(res, status))
	if res != okResponse {
		return
	}
	if rt.up.h2resp != nil {
		io.Copy(io.Discard, rt.up.h2resp.Body)
		rt.up.discard()
		return
	}
	rt.up.finish(rt.up.body.Discard(1<<30), true)
}

// discardSink swallows a response (mirrors).
type discardSink struct{}

func (discardSink) writeHead(int, []byte, http1.Headers, int64) error { return nil }
func (discardSink) Write(p []byte) (int, error)                       { return len(p), nil }
func (discardSink) flush() error                                      { return nil }
func (discardSink) finish(http1.Headers) error                        { return nil }
func (discardSink) abort()                                            {}

func addrString(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	s := a.String()
	if i := bytes.LastIndexByte([]byte(s), ':'); i > 0 {
		return s[:i]
	}
	return s
}
