package route

import (
	"bytes"
	"fmt"
	"math/bits"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
)

// Config is a compiled RouteConfiguration. It is immutable apart from each
// weighted route's pick sequence.
type Config struct {
	Name string
	// NoVirtualHost is the response code details when no virtual host
	// matches the authority (404 NR).
	NoVirtualHost string
	exact         map[string]*VirtualHost
	// suffix holds "*.x" style wildcards (longest first), prefix "x.*".
	suffix   []wildcard
	prefix   []wildcard
	catchAll *VirtualHost
	Hosts    []*VirtualHost
}

type wildcard struct {
	part string
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name string
	// NoRoute is the response code details when no route of the virtual
	// host matches (404 NR).
	NoRoute string
	Routes  []*Route
	Retry   *RetryPolicy
	Headers HeaderOps
	// filters and legacy are the virtual host's typed_per_filter_config
	// and legacy filter fields (cors).
	filters, legacy filter.RouteConfigs
	// IncludeAttemptCount adds x-envoy-attempt-count upstream.
	IncludeAttemptCount bool
}

// Action says what a route does.
type Action uint8

// Route actions.
const (
	ActionRoute Action = iota
	ActionRedirect
	ActionDirect
)

// Route is a compiled route.
type Route struct {
	Name   string
	Action Action

	pathKind      byte // 'p'refix, 'e'xact, 'r'egex, 's'eparated prefix
	path          string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []headerMatcher
	query         []queryMatcher

	// Clusters are the weighted clusters; a single cluster has weight 1.
	Clusters    []WeightedCluster
	totalWeight uint64
	picks       atomic.Uint64 // PickCluster's position in its sequence

	PrefixRewrite string
	RegexRewrite  *regexp.Regexp
	RegexSubst    string
	HostRewrite   string
	// Timeout is the whole-request timeout; 0 disables it. HasTimeout is
	// false when the route left it unset (Envoy's default is 15 s).
	Timeout time.Duration
	Retry   *RetryPolicy
	Mirrors []Mirror
	Hash    []HashPolicy
	// Upgrades lists enabled upgrade types (lower-case) beyond the HCM's.
	Upgrades []string

	Redirect *Redirect
	Status   int
	Body     string

	Headers HeaderOps
	// Filters are the per-filter configs the route sees, most specific
	// first (route, virtual host, route configuration, legacy fields).
	Filters filter.RouteConfigs
	VHost   *VirtualHost
	// Config is the Istio config name from metadata (informational).
	Config string
	// Operation is the route's decorator operation, the name of the spans
	// of its requests (empty: the connection manager's default).
	Operation string
	// Reasons are the response code details of the local replies the
	// route makes (fault abort, direct response), naming it and Config.
	Reasons respdetail.Route
}

// WeightedCluster is one destination of a route.
type WeightedCluster struct {
	Name    string
	Weight  uint64
	Headers HeaderOps
	// HostRewrite overrides the route's host rewrite when set.
	HostRewrite string
	// NotFound is the response code details when the proxy has no
	// cluster of that name (503 NC).
	NotFound string
}

// Mirror is a request mirror policy.
type Mirror struct {
	Cluster  string
	Fraction filter.Fraction
}

// Redirect is a compiled RedirectAction.
type Redirect struct {
	Scheme, Host, Path, PrefixRewrite string
	Port                              uint32
	Code                              int
	StripQuery                        bool
}

// Compile compiles rc. Errors name the field path and are meant for a
// NACK.
func Compile(rc *routev3.RouteConfiguration) (*Config, error) {
	c := &Config{Name: rc.GetName(), exact: map[string]*VirtualHost{}}
	c.NoVirtualHost = respdetail.NoRoute(c.Name, "")
	filters, err := filter.CompileRouteConfigs(rc.GetTypedPerFilterConfig(), "")
	if err != nil {
		return nil, err
	}
	for i, vhp := range rc.GetVirtualHosts() {
		path := fmt.Sprintf("virtual_hosts[%d]", i)
		vh, err := compileVirtualHost(vhp, path, filters)
		if err != nil {
			return nil, err
		}
		vh.NoRoute = respdetail.NoRoute(c.Name, vh.Name)
		c.Hosts = append(c.Hosts, vh)
		if len(vhp.GetDomains()) == 0 {
			return nil, fmt.Errorf("%s.domains: at least one domain is required", path)
		}
		for j, d := range vhp.GetDomains() {
			d = strings.ToLower(d)
			dpath := fmt.Sprintf("%s.domains[%d]", path, j)
			switch {
			case d == "*":
				if c.catchAll != nil {
					return nil, fmt.Errorf("%s: only one virtual host may use \"*\"", dpath)
				}
				c.catchAll = vh
			case strings.HasPrefix(d, "*"):
				c.suffix = append(c.suffix, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				c.prefix = append(c.prefix, wildcard{d[:len(d)-1], vh})
			case strings.Contains(d, "*"):
				return nil, fmt.Errorf("%s: %q: a wildcard must be the first or last character", dpath, d)
			default:
				if _, dup := c.exact[d]; dup {
					return nil, fmt.Errorf("%s: domain %q is used by two virtual hosts", dpath, d)
				}
				c.exact[d] = vh
			}
		}
	}
	byLen := func(w []wildcard) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].part) > len(w[j].part) })
	}
	byLen(c.suffix)
	byLen(c.prefix)
	return c, nil
}

func compileVirtualHost(p *routev3.VirtualHost, path string, rcFilters filter.RouteConfigs) (*VirtualHost, error) {
	vh := &VirtualHost{Name: p.GetName(), IncludeAttemptCount: p.GetIncludeRequestAttemptCount()}
	if p.GetRequireTls() != routev3.VirtualHost_NONE {
		return nil, fmt.Errorf("%s.require_tls: not supported", path)
	}
	var err error
	if vh.Headers, err = compileHeaderOps(p.GetRequestHeadersToAdd(), p.GetRequestHeadersToRemove(), p.GetResponseHeadersToAdd(), p.GetResponseHeadersToRemove(), path); err != nil {
		return nil, err
	}
	if p.GetRetryPolicy() != nil {
		if vh.Retry, err = compileRetry(p.GetRetryPolicy(), path+".retry_policy"); err != nil {
			return nil, err
		}
	}
	if vh.filters, err = filter.CompileRouteConfigs(p.GetTypedPerFilterConfig(), path); err != nil {
		return nil, err
	}
	vh.filters = vh.filters.Merge(rcFilters)
	if p.GetCors() != nil {
		lc, err := filter.LegacyCors(p.GetCors(), path+".cors")
		if err != nil {
			return nil, err
		}
		vh.legacy = filter.RouteConfigs{lc}
	}
	for i, rp := range p.GetRoutes() {
		r, err := compileRoute(rp, fmt.Sprintf("%s.routes[%d]", path, i), vh)
		if err != nil {
			return nil, err
		}
		if r.Retry == nil {
			r.Retry = vh.Retry
		}
		vh.Routes = append(vh.Routes, r)
	}
	return vh, nil
}

func compileRoute(p *routev3.Route, path string, vh *VirtualHost) (*Route, error) {
	r := &Route{Name: p.GetName(), VHost: vh}
	if md := p.GetMetadata().GetFilterMetadata()["istio"]; md != nil {
		r.Config = md.GetFields()["config"].GetStringValue()
	}
	if d := p.GetDecorator(); d != nil {
		if d.GetOperation() == "" {
			return nil, fmt.Errorf("%s.decorator.operation: must not be empty", path)
		}
		if d.GetPropagate() != nil && !d.GetPropagate().GetValue() {
			return nil, fmt.Errorf("%s.decorator.propagate: false is not supported; remove it", path)
		}
		r.Operation = d.GetOperation()
	}
	if err := r.compileMatch(p.GetMatch(), path+".match"); err != nil {
		return nil, err
	}
	var err error
	if r.Headers, err = compileHeaderOps(p.GetRequestHeadersToAdd(), p.GetRequestHeadersToRemove(), p.GetResponseHeadersToAdd(), p.GetResponseHeadersToRemove(), path); err != nil {
		return nil, err
	}
	if r.Filters, err = filter.CompileRouteConfigs(p.GetTypedPerFilterConfig(), path); err != nil {
		return nil, err
	}
	r.Filters = r.Filters.Merge(vh.filters)
	legacy := vh.legacy
	switch a := p.GetAction().(type) {
	case *routev3.Route_Route:
		r.Action = ActionRoute
		if err := r.compileAction(a.Route, path+".route"); err != nil {
			return nil, err
		}
		if a.Route.GetCors() != nil {
			lc, err := filter.LegacyCors(a.Route.GetCors(), path+".route.cors")
			if err != nil {
				return nil, err
			}
			legacy = filter.RouteConfigs{lc}
		}
	case *routev3.Route_Redirect:
		r.Action = ActionRedirect
		if err := r.compileRedirect(a.Redirect, path+".redirect"); err != nil {
			return nil, err
		}
	case *routev3.Route_DirectResponse:
		r.Action = ActionDirect
		st := a.DirectResponse.GetStatus()
		if st < 200 || st > 599 {
			return nil, fmt.Errorf("%s.direct_response.status: %d is not in [200, 600)", path, st)
		}
		r.Status = int(st)
		if b := a.DirectResponse.GetBody(); b != nil {
			switch s := b.GetSpecifier().(type) {
			case *corev3.DataSource_InlineString:
				r.Body = s.InlineString
			case *corev3.DataSource_InlineBytes:
				r.Body = string(s.InlineBytes)
			default:
				return nil, fmt.Errorf("%s.direct_response.body: only inline_string and inline_bytes are supported", path)
			}
		}
	default:
		return nil, fmt.Errorf("%s: unsupported action %T; use route, redirect or direct_response", path, a)
	}
	r.Filters = append(r.Filters, legacy...)
	r.Reasons = respdetail.ForRoute(r.Name, r.Config, vh.Name)
	for i := range r.Clusters {
		r.Clusters[i].NotFound = respdetail.ForCluster(r.Clusters[i].Name).NotFound
	}
	return r, nil
}

func (r *Route) compileMatch(m *routev3.RouteMatch, path string) error {
	r.caseSensitive = m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		r.pathKind, r.path = 'p', ps.Prefix
	case *routev3.RouteMatch_Path:
		r.pathKind, r.path = 'e', ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		r.pathKind, r.path = 's', ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := filter.CompileRegex(ps.SafeRegex.GetRegex(), path+".safe_regex.regex")
		if err != nil {
			return err
		}
		r.pathKind, r.re = 'r', re
	default:
		return fmt.Errorf("%s: unsupported path specifier %T; use prefix, path, path_separated_prefix or safe_regex", path, ps)
	}
	if !r.caseSensitive && r.pathKind != 'r' {
		r.path = strings.ToLower(r.path)
	}
	if m.GetRuntimeFraction() != nil || len(m.GetCookies()) > 0 || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 || len(m.GetFilterState()) > 0 {
		return fmt.Errorf("%s: runtime_fraction, cookies, tls_context, dynamic_metadata and filter_state matches are not supported", path)
	}
	for i, h := range m.GetHeaders() {
		hm, err := compileHeaderMatcher(h, fmt.Sprintf("%s.headers[%d]", path, i))
		if err != nil {
			return err
		}
		r.headers = append(r.headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm, err := compileQueryMatcher(q, fmt.Sprintf("%s.query_parameters[%d]", path, i))
		if err != nil {
			return err
		}
		r.query = append(r.query, qm)
	}
	return nil
}

// Request is what route selection looks at.
type Request struct {
	Authority []byte
	// Path is the request target in origin form, with the query.
	Path    []byte
	Method  []byte
	Scheme  []byte
	Headers http1.Headers
}

// header returns a request header, including the pseudo-headers.
func (q *Request) header(name string) ([]byte, bool) {
	switch name {
	case ":authority", "host":
		return q.Authority, q.Authority != nil
	case ":path":
		return q.Path, true
	case ":method":
		return q.Method, true
	case ":scheme":
		return q.Scheme, q.Scheme != nil
	}
	return q.Headers.Get(name)
}

// VirtualHost returns the virtual host for authority (nil if none).
func (c *Config) VirtualHost(authority []byte) *VirtualHost {
	if c == nil {
		return nil
	}
	var buf [256]byte
	host := buf[:0]
	if len(authority) <= len(buf) {
		for _, ch := range authority {
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			host = append(host, ch)
		}
	} else {
		host = bytes.ToLower(authority)
	}
	if vh, ok := c.exact[string(host)]; ok {
		return vh
	}
	for _, w := range c.suffix {
		if len(host) > len(w.part) && string(host[len(host)-len(w.part):]) == w.part {
			return w.vh
		}
	}
	for _, w := range c.prefix {
		if len(host) > len(w.part) && string(host[:len(w.part)]) == w.part {
			return w.vh
		}
	}
	return c.catchAll
}

// NoRouteDetails is the response code details of a request Select found
// no route for: which virtual host, if any, matched its authority.
func (c *Config) NoRouteDetails(q *Request) string {
	if vh := c.VirtualHost(q.Authority); vh != nil {
		return vh.NoRoute
	}
	return c.NoVirtualHost
}

// Select returns the first matching route, or nil (404 NR).
func (c *Config) Select(q *Request) *Route {
	vh := c.VirtualHost(q.Authority)
	if vh == nil {
		return nil
	}
	for _, r := range vh.Routes {
		if r.Matches(q) {
			return r
		}
	}
	return nil
}

// Matches reports whether r's match conditions hold for q.
func (r *Route) Matches(q *Request) bool {
	p := q.Path
	query := []byte(nil)
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p, query = p[:i], p[i+1:]
	}
	if i := bytes.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	switch r.pathKind {
	case 'p':
		if !hasPrefix(p, r.path, r.caseSensitive) {
			return false
		}
	case 'e':
		if len(p) != len(r.path) || !hasPrefix(p, r.path, r.caseSensitive) {
			return false
		}
	case 's':
		if !hasPrefix(p, r.path, r.caseSensitive) || (len(p) > len(r.path) && p[len(r.path)] != '/') {
			return false
		}
	case 'r':
		if !r.re.Match(p) {
			return false
		}
	}
	for i := range r.headers {
		if !r.headers[i].match(q) {
			return false
		}
	}
	for i := range r.query {
		if !r.query[i].match(query) {
			return false
		}
	}
	return true
}

func hasPrefix(p []byte, prefix string, caseSensitive bool) bool {
	if len(p) < len(prefix) {
		return false
	}
	if caseSensitive {
		return string(p[:len(prefix)]) == prefix
	}
	return http1.EqualFold(p[:len(prefix)], prefix)
}

// PickCluster chooses the weighted cluster for the next request.
//
// Picks follow a low-discrepancy sequence (the fractional parts of n·φ)
// rather than independent random draws: every run of consecutive requests
// through this route splits as the weights say to within a few requests,
// so a 90/10 canary is 90/10 over the next thousand calls, not only on
// average. The sequence is per compiled route and shared by every
// connection (one atomic add per pick).
func (r *Route) PickCluster() *WeightedCluster {
	if len(r.Clusters) == 1 {
		return &r.Clusters[0]
	}
	if r.totalWeight == 0 {
		return nil
	}
	return r.clusterAt(r.picks.Add(1))
}

// golden is 2^64/φ: n·golden mod 2^64 is frac(n/φ)·2^64, a Weyl sequence
// whose first N values leave no gap wider than about 2.6/N (the three-gap
// theorem).
const golden = 0x9E3779B97F4A7C15

// clusterAt maps the n-th pick to a cluster: frac(n/φ) scaled to the total
// weight, then the cluster whose weight range holds it.
func (r *Route) clusterAt(n uint64) *WeightedCluster {
	x, _ := bits.Mul64(n*golden, r.totalWeight)
	for i := range r.Clusters {
		if x < r.Clusters[i].Weight {
			return &r.Clusters[i]
		}
		x -= r.Clusters[i].Weight
	}
	return &r.Clusters[len(r.Clusters)-1]
}

// RewritePath returns the upstream path for the request path p (with
// query), appending to dst; it returns p unchanged when no rewrite applies.
func (r *Route) RewritePath(dst, p []byte) []byte {
	if r.PrefixRewrite == "" && r.RegexRewrite == nil {
		return p
	}
	pathOnly, query := p, []byte(nil)
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		pathOnly, query = p[:i], p[i:]
	}
	if r.RegexRewrite != nil {
		dst = append(dst[:0], r.RegexRewrite.ReplaceAll(pathOnly, []byte(r.RegexSubst))...)
	} else {
		matched := len(r.path)
		if r.pathKind != 'p' && r.pathKind != 's' {
			matched = len(pathOnly)
		}
		if matched > len(pathOnly) {
			matched = len(pathOnly)
		}
		dst = append(dst[:0], r.PrefixRewrite...)
		dst = append(dst, pathOnly[matched:]...)
	}
	return append(dst, query...)
}
