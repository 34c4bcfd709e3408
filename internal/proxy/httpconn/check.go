package httpconn

import (
	"net/netip"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// RBACCheck is what a connection manager's RBAC filters decide for a
// described request (Config.CheckRBAC).
type RBACCheck struct {
	// Route is the name of the route the request selects; NoRoute is set
	// when none matches (the RBAC filters run before the router all the
	// same).
	Route   string
	NoRoute bool
	// Verdicts are the RBAC filters' verdicts in chain order, up to the
	// first denial.
	Verdicts []filter.RBACVerdict
}

// CheckRBAC runs a described request through the config's compiled RBAC
// filters as a request on conn would reach them: the path normalized as
// the connection manager does, x-forwarded-for extended when
// use_remote_address appends the peer, the route selected from the live
// route table for its per-route configs, then each RBAC filter's own
// evaluation. Nothing is sent anywhere; q's headers are lower-case.
func (c *Config) CheckRBAC(q route.Request, conn filter.Conn) RBACCheck {
	if c.NormalizePath || c.MergeSlashes {
		q.Path = normalizePath(nil, q.Path, c.NormalizePath, c.MergeSlashes)
	}
	q.Headers = append(http1.Headers(nil), q.Headers...)
	if c.UseRemoteAddress && !c.SkipXffAppend && conn.Remote.Addr().IsValid() {
		ip := []byte(conn.Remote.Addr().String())
		if v, ok := q.Headers.Get("x-forwarded-for"); ok && len(v) > 0 {
			q.Headers.Set("x-forwarded-for", append(append(append([]byte(nil), v...), ", "...), ip...))
		} else {
			q.Headers.Set("x-forwarded-for", ip)
		}
	}
	var out RBACCheck
	var rt *route.Route
	if rc := c.Routes.Load(); rc != nil {
		rt = rc.Select(&q)
	}
	var rcs filter.RouteConfigs
	if rt != nil {
		out.Route, rcs = rt.Name, rt.Filters
	} else {
		out.NoRoute = true
	}
	s := &checkStream{cfg: c, q: &q, conn: &conn, route: rt}
	out.Verdicts = c.Filters.CheckRBAC(s, rcs)
	return out
}

// checkStream is a described request as the RBAC filters see it: it
// answers their reads and records nothing (the verdicts carry the
// outcome).
type checkStream struct {
	authn filter.Authn
	cfg   *Config
	q     *route.Request
	conn  *filter.Conn
	route *route.Route
}

func (s *checkStream) Header(name string) ([]byte, bool) { return s.q.Headers.Get(name) }
func (s *checkStream) Method() []byte                    { return s.q.Method }
func (s *checkStream) Forwarding() bool {
	return s.route != nil && s.route.Action == route.ActionRoute
}
func (s *checkStream) Rand() uint64                           { return 0 }
func (s *checkStream) Delay(time.Duration)                    {}
func (s *checkStream) Abort(int, int, string)                 {}
func (s *checkStream) Reply(int)                              {}
func (s *checkStream) SetResponseHeader(_, _ []byte)          {}
func (s *checkStream) Forward()                               {}
func (s *checkStream) Path() []byte                           { return s.q.Path }
func (s *checkStream) Conn() *filter.Conn                     { return s.conn }
func (s *checkStream) Deny(string)                            {}
func (s *checkStream) LogRBAC(bool, bool, *filter.RBACPolicy) {}
func (s *checkStream) Authn() *filter.Authn                   { return &s.authn }
func (s *checkStream) SetRequestHeader(string, []byte)        {}
func (s *checkStream) DelRequestHeader(string)                {}
func (s *checkStream) Unauthorized(_, _ string)               {}
func (s *checkStream) RemoteIP() netip.Addr {
	return remoteIP(s.cfg, s.conn.Remote.Addr(), s.q.Headers)
}
