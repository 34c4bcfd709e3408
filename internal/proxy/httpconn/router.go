package httpconn

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
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

// run takes a prepared request through route selection, filters and the
// router, and leaves the response written to the sink.
func (e *exchange) run() {
	e.prepare()
	rc := e.cfg.Routes.Load()
	var r *route.Route
	if rc != nil {
		r = rc.Select(&e.q)
	}
	if r == nil {
		e.localReply(404, "", FlagNR, nil)
		return
	}
	e.rec.RouteName = r.Name
	var corsHdrs [][2]string
	if e.cfg.CorsEnabled && r.Cors != nil && r.Cors.Enabled.Hit(e.m.rand()) {
		if origin, ok := e.q.Headers.Get("origin"); ok && r.Cors.AllowsOrigin(origin) {
			if string(e.q.Method) == "OPTIONS" && e.q.Headers.Has("access-control-request-method") {
				e.localReply(200, "", 0, r.Cors.Preflight(origin))
				return
			}
			corsHdrs = r.Cors.Simple(origin)
		}
	}
	if e.cfg.FaultEnabled && r.Fault != nil {
		delay, abort := r.Fault.Decide(e.m.rand(), e.m.rand())
		if delay > 0 {
			e.rec.Flags |= FlagDI
			e.m.sleep(delay)
		}
		if abort {
			if r.Fault.AbortGRPC >= 0 && e.grpc {
				e.localGRPC(r.Fault.AbortGRPC, r.Fault.Body, FlagFI)
				return
			}
			status := r.Fault.AbortStatus
			if status == 0 {
				status = 500
			}
			e.localReply(status, r.Fault.Body, FlagFI, nil)
			return
		}
	}
	switch r.Action {
	case route.ActionRedirect:
		loc := r.Redirect.Location(r, e.q.Scheme, e.q.Authority, e.q.Path)
		code := r.Redirect.Code
		if code == 0 {
			code = 301
		}
		e.localReply(code, "", 0, [][2]string{{"location", loc}})
		return
	case route.ActionDirect:
		e.localReply(r.Status, r.Body, 0, nil)
		return
	}
	wc := r.PickCluster(e.m.rand())
	if wc == nil {
		e.localReply(503, "", FlagNC, nil)
		return
	}
	e.rec.ClusterName = wc.Name
	cl := e.m.Clusters.Get(wc.Name)
	if cl == nil {
		e.localReply(503, "", FlagNC, nil)
		return
	}
	e.rec.Cluster = cl
	if e.upgrade != nil && !e.cfg.upgradeAllowed(e.upgrade, r) {
		e.localReply(403, bodyUpgradeRej, 0, nil)
		return
	}
	e.forward(r, wc, cl, corsHdrs)
}

// localGRPC answers a gRPC request with a trailers-only status.
func (e *exchange) localGRPC(code int, msg string, flags Flags) {
	e.rec.Flags |= flags
	e.rec.Status = 200
	e.rec.GRPCStatus = code
	h := http1.Headers{
		{Name: []byte("content-type"), Value: []byte("application/grpc")},
		{Name: []byte("grpc-status"), Value: strconv.AppendInt(nil, int64(code), 10)},
		{Name: []byte("grpc-message"), Value: []byte(msg)},
	}
	e.headsSent = true
	e.sink.writeHead(200, nil, h, 0)
	e.sink.finish(nil)
}

// effective retry settings of one request.
type retryState struct {
	policy  route.RetryPolicy
	enabled bool
	left    int
}

func (e *exchange) retrySettings(r *route.Route) retryState {
	var rs retryState
	if r.Retry != nil {
		rs.policy, rs.enabled = *r.Retry, true
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

// forward runs the router: header manipulation, timeouts, retries, mirrors
// and the upstream attempts.
func (e *exchange) forward(r *route.Route, wc *route.WeightedCluster, cl *cluster.Cluster, corsHdrs [][2]string) {
	timeout := r.Timeout
	if e.trusted {
		if n, ok := e.headerInt("x-envoy-upstream-rq-timeout-ms"); ok {
			timeout = time.Duration(n) * time.Millisecond
		}
	}
	rs := e.retrySettings(r)
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
	// e.path may alias the request's buffer; rewrites go to the exchange's
	// own pathBuf.
	e.path = r.RewritePath(e.pathBuf[:0], e.q.Path)
	if len(e.path) > 0 && (len(e.q.Path) == 0 || &e.path[0] != &e.q.Path[0]) {
		e.pathBuf = e.path[:0]
		// Envoy keeps the path the client sent for logs and the upstream.
		h.SetB(nameOriginalPath, e.q.Path)
	}
	e.hostHdr = e.q.Authority
	if wc.HostRewrite != "" {
		e.hostHdr = []byte(wc.HostRewrite)
	} else if r.HostRewrite != "" {
		e.hostHdr = []byte(r.HostRewrite)
	}
	if timeout > 0 {
		e.tmoBuf2 = strconv.AppendInt(e.tmoBuf[:0], int64(timeout/time.Millisecond), 10)
	} else {
		e.tmoBuf2 = nil
	}
	// Keep small bodies for retries and mirrors.
	if e.body != nil && e.bodyLen > 0 && e.bodyLen <= maxReplayBody && (rs.enabled || len(r.Mirrors) > 0) {
		if err := e.bufferBody(); err != nil {
			e.localReply(400, "", FlagDPE, nil)
			return
		}
	}
	if len(r.Mirrors) > 0 && (e.body == nil || e.buffered) {
		e.mirror(r)
	}
	if len(r.Hash) > 0 {
		if k := r.HashKey(&e.q, []byte(addrString(e.info.Remote))); k != 0 {
			e.lbctx.Hash, e.lbctx.HasHash = k, true
		}
	}
	e.lbctx.OriginalDst = e.info.OriginalDst
	e.lbctx.AvoidTried = rs.policy.PreviousHosts

	start := e.m.now()
	var deadline time.Time
	if timeout > 0 {
		deadline = start.Add(timeout)
	}
	var retryRelease func()
	defer func() {
		if retryRelease != nil {
			retryRelease()
		}
	}()
	for attempt := 1; ; attempt++ {
		e.rec.Attempts = attempt
		tryDeadline := deadline
		perTry := false
		if rs.enabled && rs.policy.PerTryTimeout > 0 {
			if d := e.m.now().Add(rs.policy.PerTryTimeout); tryDeadline.IsZero() || d.Before(tryDeadline) {
				tryDeadline, perTry = d, true
			}
		}
		e.lbctx.Tried = e.tried
		host, err := cl.Pick(&e.lbctx)
		if err != nil || host == nil {
			if errors.Is(err, cluster.ErrNoOriginalDst) {
				e.localReply(503, bodyConnFail, FlagUF, nil)
				return
			}
			e.localReply(503, bodyNoHealthy, FlagUH, nil)
			return
		}
		e.rec.Host = host
		release, ok := cl.TryRequest()
		if !ok {
			e.localReply(503, bodyOverflow, FlagUO, nil)
			return
		}
		if e.vhIncludeAttempts(r) {
			e.cntBuf2 = strconv.AppendInt(e.cntBuf[:0], int64(attempt), 10)
		}
		host.StartRequest()
		sent := e.m.now()
		res, status := e.up.send(e, cl, host, tryDeadline)
		host.EndRequest()
		release()
		if retryRelease != nil {
			retryRelease()
			retryRelease = nil
		}
		if res == overflowed {
			// max_connections and max_pending_requests reached: the
			// request never reached the host.
			e.localReply(503, bodyOverflow, FlagUO, nil)
			return
		}
		e.tried = append(e.tried, host)
		cl.Report(host, reportOf(res, status))
		e.rec.UpstreamDuration = e.m.now().Sub(sent)

		canReplay := !e.bodyTaken || e.buffered
		retry := false
		switch res {
		case okResponse:
			retry = rs.enabled && rs.policy.RetryStatus(status, e.up.grpcStatus())
		case connectFailed:
			retry = rs.enabled && rs.policy.RetryConnectFailure()
		case timedOut:
			retry = perTry && rs.enabled && rs.policy.RetryTimeout()
		case resetBeforeResponse:
			retry = rs.enabled && rs.policy.RetryReset()
		}
		if retry && rs.left > 0 && canReplay && (deadline.IsZero() || e.m.now().Before(deadline)) {
			if rel, ok := cl.TryRetry(); ok {
				retryRelease = rel
				rs.left--
				if res == okResponse {
					e.up.abandon()
				}
				if d := rs.policy.BackOff(attempt, e.m.rand()); d > 0 {
					if !deadline.IsZero() && e.m.now().Add(d).After(deadline) {
						d = deadline.Sub(e.m.now())
					}
					e.m.sleep(d)
				}
				continue
			}
		}
		if retry && (rs.left == 0 || !canReplay) && rs.enabled {
			e.rec.Flags |= FlagURX
		}
		switch res {
		case connectFailed:
			body := bodyConnFail
			if e.up.failure != "" {
				e.rec.TransportFailure = e.up.failure
				body += ", transport failure reason: " + e.up.failure
			}
			e.localReply(503, body, FlagUF, nil)
		case timedOut:
			e.localReply(504, bodyTimeout, FlagUT, nil)
		case resetBeforeResponse:
			e.localReply(503, bodyConnTerm, FlagUC, nil)
		case okResponse:
			e.respond(r, wc, corsHdrs, sent)
		}
		return
	}
}

func (e *exchange) vhIncludeAttempts(r *route.Route) bool { return r.VHost.IncludeAttemptCount }

// bufferBody reads a small body fully so that it can be replayed.
func (e *exchange) bufferBody() error {
	if cap(e.replay) < int(e.bodyLen) {
		e.replay = make([]byte, e.bodyLen)
	}
	e.replay = e.replay[:e.bodyLen]
	n, err := io.ReadFull(e.body, e.replay)
	if err != nil {
		return err
	}
	e.replay = e.replay[:n]
	e.buffered = true
	e.rec.BytesReceived = int64(n)
	return nil
}

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
