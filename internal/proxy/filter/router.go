package filter

import (
	"fmt"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// router is envoy.filters.http.router, the terminal filter: the connection
// manager's router picks the cluster and forwards (package httpconn).
var router = func() *Builder {
	b := newBuilder(wellknown.Router, compileRouter)
	b.terminal = true
	return b
}()

// compileRouter accepts a Router config whose fields change nothing the
// proxy does (dynamic_stats, start_child_span, ...) and rejects the rest.
func compileRouter(r *routerv3.Router, path string) (Filter, error) {
	switch {
	case len(r.GetUpstreamLog()) > 0:
		return nil, fmt.Errorf("%s.upstream_log: not supported; use the connection manager's access_log", path)
	case r.GetSuppressEnvoyHeaders():
		return nil, fmt.Errorf("%s.suppress_envoy_headers: not supported", path)
	case len(r.GetStrictCheckHeaders()) > 0:
		return nil, fmt.Errorf("%s.strict_check_headers: not supported", path)
	case r.GetRespectExpectedRqTimeout():
		return nil, fmt.Errorf("%s.respect_expected_rq_timeout: not supported", path)
	case len(r.GetUpstreamHttpFilters()) > 0:
		return nil, fmt.Errorf("%s.upstream_http_filters: upstream filters are not supported", path)
	}
	return routerFilter{}, nil
}

type routerFilter struct{}

func (routerFilter) Decode(s Stream, _ any) Status {
	s.Forward()
	return Stop
}
