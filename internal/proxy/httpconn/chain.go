package httpconn

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// filterStream is the HTTP filter chain's view of one exchange: it
// implements filter.Stream. It lives inside the exchange, so handing it to
// the filters allocates nothing.
type filterStream struct {
	e     *exchange
	route *route.Route
	// resp holds the response headers filters set, in the order they set
	// them; encode applies them to the response.
	resp http1.Headers
	// authn is the JWT authentication metadata of the request.
	authn filter.Authn
}

// runFilters selects the route and runs the request through the
// connection manager's filters in config order, until one stops (the
// router, last, always does).
func (e *exchange) runFilters() {
	fs := &e.filters
	fs.e, fs.route, fs.resp, fs.authn = e, nil, fs.resp[:0], filter.Authn{}
	if rc := e.cfg.Routes.Load(); rc != nil {
		fs.route = rc.Select(&e.q)
	}
	if fs.route != nil {
		e.rec.RouteName = fs.route.Name
		e.rec.Operation = fs.route.Operation
		if fs.route.Action == route.ActionRoute {
			// Envoy resolves the weighted cluster with the route, before
			// the filters: a fault abort is reported against it
			// (destination_service) though it never reaches the router.
			e.rt.pickCluster(fs.route)
		}
	}
	for i := range e.cfg.Filters {
		l := &e.cfg.Filters[i]
		var perRoute any
		if fs.route != nil {
			perRoute = fs.route.Filters.For(l)
		}
		if l.Filter.Decode(fs, perRoute) == filter.Stop {
			return
		}
	}
}

// encode sets the filters' response headers on h, the latest set first so
// that the earliest filter's value wins, as Envoy's reverse encode order
// has it.
func (fs *filterStream) encode(h *http1.Headers) {
	for i := len(fs.resp) - 1; i >= 0; i-- {
		h.SetB(fs.resp[i].Name, fs.resp[i].Value)
	}
}

func (fs *filterStream) Header(name string) ([]byte, bool) { return fs.e.q.Headers.Get(name) }

func (fs *filterStream) Method() []byte { return fs.e.q.Method }

func (fs *filterStream) Forwarding() bool {
	return fs.route != nil && fs.route.Action == route.ActionRoute
}

func (fs *filterStream) Rand() uint64 { return fs.e.m.rand() }

func (fs *filterStream) Delay(d time.Duration) {
	fs.e.rec.Flags |= FlagDI
	fs.e.m.sleep(d)
}

func (fs *filterStream) Abort(status, grpcStatus int, body string) {
	if grpcStatus >= 0 && fs.e.grpc {
		fs.e.localGRPC(grpcStatus, body, FlagFI, fs.faultDetails())
		return
	}
	fs.e.localReply(status, body, FlagFI, fs.faultDetails(), nil)
}

func (fs *filterStream) faultDetails() string {
	if fs.route != nil {
		return fs.route.Reasons.FaultAbort
	}
	return respdetail.FaultAbort
}

func (fs *filterStream) Reply(status int) {
	fs.e.localReply(status, "", 0, respdetail.DirectResponse, nil)
}

func (fs *filterStream) SetResponseHeader(name, value []byte) {
	fs.resp = append(fs.resp, http1.Header{Name: name, Value: value})
}

func (fs *filterStream) Forward() { fs.e.rt.serve(fs.route) }

func (fs *filterStream) Path() []byte { return fs.e.q.Path }

func (fs *filterStream) Conn() *filter.Conn { return &fs.e.info.Conn }

func (fs *filterStream) RemoteIP() netip.Addr {
	return remoteIP(fs.e.cfg, fs.e.info.Conn.Remote.Addr(), fs.e.q.Headers)
}

// remoteIP is Envoy's downstream remote address of a request with
// headers h on a connection from peer (see filter.Stream.RemoteIP).
func remoteIP(cfg *Config, peer netip.Addr, h http1.Headers) netip.Addr {
	xff, ok := h.Get("x-forwarded-for")
	if !ok {
		return peer
	}
	// Envoy: the entry xff_num_trusted_hops from the right; with
	// use_remote_address the peer was appended, so one further left.
	skip := cfg.XffNumTrustedHops
	if cfg.UseRemoteAddress && cfg.SkipXffAppend {
		skip--
		if skip < 0 {
			return peer
		}
	}
	for {
		i := bytes.LastIndexByte(xff, ',')
		entry := bytes.TrimSpace(xff[i+1:])
		if skip == 0 {
			if a, err := netip.ParseAddr(string(entry)); err == nil {
				return a
			}
			return peer
		}
		if i < 0 {
			return peer
		}
		skip--
		xff = xff[:i]
	}
}

func (fs *filterStream) Deny(details string) {
	fs.e.rec.Details = details
	if d := fs.e.m.Debugf; d != nil {
		d("rbac: %s %s from %s: enforced denied, %s", fs.e.q.Method, fs.e.q.Path, fs.e.info.Conn.Remote, details)
	}
	fs.e.localReply(403, "RBAC: access denied", FlagRBAC, details, nil)
}

func (fs *filterStream) LogRBAC(shadow, allowed bool, p *filter.RBACPolicy) {
	d := fs.e.m.Debugf
	if d == nil {
		return
	}
	policy := "none"
	if p != nil {
		policy = p.Name
	}
	kind, outcome := "audit", "logged"
	if shadow {
		kind, outcome = "shadow", "denied"
		if allowed {
			outcome = "allowed"
		}
	}
	d("rbac: %s %s from %s: %s %s, matched policy %s", fs.e.q.Method, fs.e.q.Path, fs.e.info.Conn.Remote, kind, outcome, policy)
}

func (fs *filterStream) Authn() *filter.Authn { return &fs.authn }

func (fs *filterStream) SetRequestHeader(name string, value []byte) { fs.e.q.Headers.Set(name, value) }

func (fs *filterStream) DelRequestHeader(name string) { fs.e.q.Headers.Del(name) }

func (fs *filterStream) Unauthorized(body, details string) {
	if d := fs.e.m.Debugf; d != nil {
		d("jwt_authn: %s %s from %s: %s", fs.e.q.Method, fs.e.q.Path, fs.e.info.Conn.Remote, body)
	}
	fs.e.localReply(401, body, 0, details, [][2]string{{"www-authenticate", `Bearer realm="http://` + string(fs.host()) + string(pathOnlyOf(fs.e.q.Path)) + `", error="invalid_token"`}})
}

func (fs *filterStream) host() []byte {
	h, _ := fs.e.q.Headers.Get("host")
	return h
}

func pathOnlyOf(p []byte) []byte {
	if i := bytes.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}
