package filter

import (
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// cors is envoy.filters.http.cors: its typed_config (Cors) has no fields;
// the policy comes per route (CorsPolicy), or from the legacy cors field
// of a virtual host or route action when no per-route policy is set.
var cors = withRoute(newBuilder(wellknown.CORS, compileCorsFilter), compileCorsRoute)

func compileCorsFilter(*corsv3.Cors, string) (Filter, error) { return corsFilter{}, nil }

func compileCorsRoute(p *corsv3.CorsPolicy, path string) (any, error) { return CompileCors(p, path) }

// Cors is a compiled CorsPolicy.
type Cors struct {
	Origins []StringMatcher
	// The header values, nil when unset.
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge []byte
	AllowCredentials                                  bool
	// Enabled is the filter_enabled fraction (default all).
	Enabled Fraction
}

// CompileCors compiles a CorsPolicy; path names the field in errors.
func CompileCors(p *corsv3.CorsPolicy, path string) (*Cors, error) {
	c := &Cors{
		AllowMethods:     bytesOrNil(p.GetAllowMethods()),
		AllowHeaders:     bytesOrNil(p.GetAllowHeaders()),
		ExposeHeaders:    bytesOrNil(p.GetExposeHeaders()),
		MaxAge:           bytesOrNil(p.GetMaxAge()),
		AllowCredentials: p.GetAllowCredentials().GetValue(),
		Enabled:          all,
	}
	if fe := p.GetFilterEnabled(); fe != nil {
		c.Enabled = CompileFraction(fe.GetDefaultValue(), all)
	}
	for i, m := range p.GetAllowOriginStringMatch() {
		sm, err := CompileStringMatcher(m, fmt.Sprintf("%s.allow_origin_string_match[%d]", path, i))
		if err != nil {
			return nil, err
		}
		c.Origins = append(c.Origins, sm)
	}
	return c, nil
}

// LegacyCors compiles the cors field of a virtual host or route action
// into the config of every CORS filter of the chain.
func LegacyCors(p *routev3.CorsPolicy, path string) (RouteConfig, error) {
	c, err := CompileCors(&corsv3.CorsPolicy{
		AllowOriginStringMatch: p.GetAllowOriginStringMatch(),
		AllowMethods:           p.GetAllowMethods(),
		AllowHeaders:           p.GetAllowHeaders(),
		ExposeHeaders:          p.GetExposeHeaders(),
		MaxAge:                 p.GetMaxAge(),
		AllowCredentials:       p.GetAllowCredentials(),
		FilterEnabled:          p.GetFilterEnabled(),
	}, path)
	if err != nil {
		return RouteConfig{}, err
	}
	return RouteConfig{Value: c, kind: cors}, nil
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// AllowsOrigin reports whether origin matches one of the allowed origins.
func (c *Cors) AllowsOrigin(origin []byte) bool {
	for i := range c.Origins {
		if c.Origins[i].Match(origin) {
			return true
		}
	}
	return false
}

var (
	hdrAllowOrigin      = []byte("access-control-allow-origin")
	hdrAllowCredentials = []byte("access-control-allow-credentials")
	hdrAllowMethods     = []byte("access-control-allow-methods")
	hdrAllowHeaders     = []byte("access-control-allow-headers")
	hdrExposeHeaders    = []byte("access-control-expose-headers")
	hdrMaxAge           = []byte("access-control-max-age")
	valueTrue           = []byte("true")
)

type corsFilter struct{}

// Decode answers a preflight (OPTIONS with Origin and
// Access-Control-Request-Method) from an allowed origin with 200, and for
// any other request from an allowed origin sets the CORS response headers
// on whatever response the request gets (upstream or a later filter's
// local reply). Routes that do not forward (redirects, direct responses)
// and requests without Origin pass untouched, as in Envoy.
func (corsFilter) Decode(s Stream, perRoute any) Status {
	c, ok := perRoute.(*Cors)
	if !ok || !s.Forwarding() || !c.Enabled.Hit(s.Rand()) {
		return Continue
	}
	origin, ok := s.Header("origin")
	if !ok || len(origin) == 0 || !c.AllowsOrigin(origin) {
		return Continue
	}
	s.SetResponseHeader(hdrAllowOrigin, origin)
	if c.AllowCredentials {
		s.SetResponseHeader(hdrAllowCredentials, valueTrue)
	}
	if c.ExposeHeaders != nil {
		s.SetResponseHeader(hdrExposeHeaders, c.ExposeHeaders)
	}
	if m, ok := s.Header("access-control-request-method"); !ok || len(m) == 0 || string(s.Method()) != "OPTIONS" {
		return Continue
	}
	for _, h := range [...]struct{ name, value []byte }{
		{hdrAllowMethods, c.AllowMethods},
		{hdrAllowHeaders, c.AllowHeaders},
		{hdrMaxAge, c.MaxAge},
	} {
		if h.value != nil {
			s.SetResponseHeader(h.name, h.value)
		}
	}
	s.Reply(200)
	return Stop
}
