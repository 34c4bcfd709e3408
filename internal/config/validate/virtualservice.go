package validate

import (
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	networking "istio.io/api/networking/v1alpha3"
)

func (c *checker) virtualService(vs *networking.VirtualService) {
	spec := Path("spec")
	delegate := len(vs.GetHosts()) == 0
	if delegate {
		// A VirtualService without hosts is a delegate: another
		// VirtualService's http[].delegate points at it.
		if len(vs.GetGateways()) > 0 {
			c.errorf(spec.Field("gateways"), "a VirtualService without hosts is a delegate and must not list gateways; add hosts or remove gateways")
		}
		if len(vs.GetTcp()) > 0 || len(vs.GetTls()) > 0 {
			c.errorf(spec.Field("hosts"), "missing; a VirtualService with tcp or tls routes needs at least one host")
		}
		if len(vs.GetHttp()) == 0 {
			c.errorf(spec.Field("hosts"), "missing; a VirtualService needs at least one host and one http, tcp or tls route")
		}
	} else if len(vs.GetHttp()) == 0 && len(vs.GetTcp()) == 0 && len(vs.GetTls()) == 0 {
		c.errorf(spec, "no routes; a VirtualService needs at least one of http, tcp or tls")
	}

	boundToMesh := len(vs.GetGateways()) == 0
	for i, g := range vs.GetGateways() {
		c.checkGatewayName(spec.Field("gateways").Index(i), g)
		if g == "mesh" {
			boundToMesh = true
		}
	}
	hostsValid := true
	for i, h := range vs.GetHosts() {
		p := spec.Field("hosts").Index(i)
		if isIP(h) {
			continue
		}
		if !c.checkFQDN(p, h, true) {
			hostsValid = false
			continue
		}
		if h == "*" && boundToMesh {
			c.errorf(p, "wildcard host \"*\" is not allowed for a VirtualService bound to the mesh; list gateways (without \"mesh\") or name the hosts")
		}
	}
	if hostsValid {
		// A host another host already covers ("a.example.com" after
		// "*.example.com", or the same name twice) makes the routes ambiguous.
		hosts := vs.GetHosts()
		for j := range hosts {
			for i := 0; i < j; i++ {
				a, b := strings.ToLower(hosts[i]), strings.ToLower(hosts[j])
				if hostMatches(a, b) || hostMatches(b, a) {
					c.errorf(spec.Field("hosts").Index(j), "host %q overlaps hosts[%d] %q; list each host once, and drop names a wildcard host already covers", hosts[j], i, hosts[i])
					break
				}
			}
		}
	}
	c.checkExportTo(spec.Field("exportTo"), vs.GetExportTo(), false, false)

	names := map[string]bool{}
	for i, r := range vs.GetHttp() {
		p := spec.Field("http").Index(i)
		if r.GetName() != "" {
			if names[r.GetName()] {
				c.warnf(p.Field("name"), "route name %q is used more than once", r.GetName())
			}
			names[r.GetName()] = true
		}
		c.httpRoute(p, r, delegate, boundToMesh)
	}
	for i, r := range vs.GetTcp() {
		p := spec.Field("tcp").Index(i)
		for j, m := range r.GetMatch() {
			mp := p.Field("match").Index(j)
			c.checkOptionalPort(mp.Field("port"), m.GetPort())
			for k, s := range m.GetDestinationSubnets() {
				c.checkIPOrCIDR(mp.Field("destinationSubnets").Index(k), s)
			}
			if m.GetSourceSubnet() != "" {
				c.checkIPOrCIDR(mp.Field("sourceSubnet"), m.GetSourceSubnet())
			}
			c.checkLabels(mp.Field("sourceLabels"), m.GetSourceLabels())
			for k, g := range m.GetGateways() {
				c.checkGatewayName(mp.Field("gateways").Index(k), g)
			}
		}
		c.routeDestinations(p.Field("route"), r.GetRoute())
	}
	for i, r := range vs.GetTls() {
		p := spec.Field("tls").Index(i)
		if len(r.GetMatch()) == 0 {
			c.errorf(p.Field("match"), "missing; a tls route needs at least one match with sniHosts")
		}
		for j, m := range r.GetMatch() {
			mp := p.Field("match").Index(j)
			if len(m.GetSniHosts()) == 0 {
				c.errorf(mp.Field("sniHosts"), "missing; a tls match needs at least one SNI host")
			}
			for k, sni := range m.GetSniHosts() {
				sp := mp.Field("sniHosts").Index(k)
				if !c.checkFQDN(sp, sni, true) {
					continue
				}
				if !sniCovered(sni, vs.GetHosts()) {
					c.errorf(sp, "SNI host %q is not covered by any of the VirtualService's hosts %v", sni, vs.GetHosts())
				}
			}
			c.checkOptionalPort(mp.Field("port"), m.GetPort())
			for k, s := range m.GetDestinationSubnets() {
				c.checkIPOrCIDR(mp.Field("destinationSubnets").Index(k), s)
			}
			c.checkLabels(mp.Field("sourceLabels"), m.GetSourceLabels())
			for k, g := range m.GetGateways() {
				c.checkGatewayName(mp.Field("gateways").Index(k), g)
			}
		}
		c.routeDestinations(p.Field("route"), r.GetRoute())
	}
}

// sniCovered reports whether an SNI name is one of the hosts or matched by
// a wildcard host.
func sniCovered(sni string, hosts []string) bool {
	for _, h := range hosts {
		if hostMatches(h, sni) || hostMatches(sni, h) {
			return true
		}
	}
	return false
}

// hostMatches reports whether pattern (possibly "*" or "*.suffix") covers host.
func hostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// routeDestinations checks tcp/tls route destinations and their weights.
func (c *checker) routeDestinations(p Path, rs []*networking.RouteDestination) {
	if len(rs) == 0 {
		c.errorf(p, "missing; a route needs at least one destination")
		return
	}
	var weights []int32
	for i, r := range rs {
		rp := p.Index(i)
		c.destination(rp.Field("destination"), r.GetDestination())
		c.checkWeight(rp.Field("weight"), r.GetWeight())
		weights = append(weights, r.GetWeight())
	}
	c.checkWeightSum(p, weights)
}

func (c *checker) checkWeight(p Path, w int32) {
	if w < 0 || w > 100 {
		c.errorf(p, "must be between 0 and 100, got %d", w)
	}
}

// checkWeightSum warns when explicit weights do not add up to 100 (Istio
// scales them, which is rarely what the author meant).
func (c *checker) checkWeightSum(p Path, weights []int32) {
	if len(weights) < 2 {
		if len(weights) == 1 && weights[0] != 0 && weights[0] != 100 {
			c.warnf(p.Index(0).Field("weight"), "the only destination has weight %d; it receives all traffic regardless", weights[0])
		}
		return
	}
	var sum int64
	for _, w := range weights {
		sum += int64(w)
	}
	if sum == 0 {
		c.errorf(p, "%d destinations all have weight 0, so none would get traffic; give them weights that add up to 100", len(weights))
		return
	}
	if sum != 100 {
		c.warnf(p, "destination weights add up to %d, not 100; traffic is split in proportion to them", sum)
	}
}

func (c *checker) destination(p Path, d *networking.Destination) {
	if d == nil {
		c.errorf(p, "missing; name the destination host")
		return
	}
	if d.GetHost() == "" {
		c.errorf(p.Field("host"), "missing; name the destination service, such as reviews or reviews.default.svc.cluster.local")
	} else if !isIP(d.GetHost()) {
		c.checkFQDN(p.Field("host"), d.GetHost(), false)
	}
	if d.GetSubset() != "" {
		c.checkSubsetName(p.Field("subset"), d.GetSubset())
	}
	if d.GetPort() != nil {
		c.checkPort(p.Field("port").Field("number"), d.GetPort().GetNumber())
	}
}

func (c *checker) httpRoute(p Path, r *networking.HTTPRoute, inDelegate, boundToMesh bool) {
	hasRoute := len(r.GetRoute()) > 0
	hasRedirect := r.GetRedirect() != nil
	hasDirect := r.GetDirectResponse() != nil
	hasDelegate := r.GetDelegate() != nil
	n := 0
	for _, b := range []bool{hasRoute, hasRedirect, hasDirect, hasDelegate} {
		if b {
			n++
		}
	}
	switch {
	case n == 0:
		c.errorf(p, "needs one of route, redirect, directResponse or delegate")
	case n > 1:
		c.errorf(p, "route, redirect, directResponse and delegate are exclusive; set only one")
	}
	if hasRedirect && r.GetRewrite() != nil {
		c.errorf(p.Field("rewrite"), "cannot be used together with redirect; choose one")
	}
	if hasDirect && r.GetRewrite() != nil {
		c.errorf(p.Field("rewrite"), "cannot be used together with directResponse; a direct response is not forwarded, so there is nothing to rewrite")
	}
	if (hasRedirect || hasDirect) && r.GetFault() != nil {
		c.errorf(p.Field("fault"), "cannot be used together with redirect or directResponse; fault injection needs a route")
	}
	if (hasRedirect || hasDirect) && (r.GetMirror() != nil || len(r.GetMirrors()) > 0) {
		c.warnf(p, "mirror acts on routed traffic; with redirect or directResponse it has no effect")
	}
	if hasDelegate {
		if inDelegate {
			c.errorf(p.Field("delegate"), "a delegate VirtualService cannot delegate again; only one level of delegation is allowed")
		}
		d := r.GetDelegate()
		if d.GetName() == "" {
			c.errorf(p.Field("delegate").Field("name"), "missing; name the delegate VirtualService")
		}
		if d.GetNamespace() != "" {
			c.checkNamespaceName(p.Field("delegate").Field("namespace"), d.GetNamespace())
		}
	}

	for i, m := range r.GetMatch() {
		c.httpMatch(p.Field("match").Index(i), m, boundToMesh)
	}

	if hasRoute {
		var weights []int32
		for i, d := range r.GetRoute() {
			dp := p.Field("route").Index(i)
			c.destination(dp.Field("destination"), d.GetDestination())
			c.checkWeight(dp.Field("weight"), d.GetWeight())
			c.headerOps(dp.Field("headers"), d.GetHeaders())
			weights = append(weights, d.GetWeight())
		}
		c.checkWeightSum(p.Field("route"), weights)
	}

	if rd := r.GetRedirect(); rd != nil {
		rp := p.Field("redirect")
		if rd.GetUri() == "" && rd.GetPrefixRewrite() == "" && rd.GetAuthority() == "" && rd.GetScheme() == "" && rd.GetRedirectPort() == nil {
			c.errorf(rp, "needs at least one of uri, prefixRewrite, authority, scheme, port or derivePort")
		}
		if rd.GetUri() != "" && rd.GetPrefixRewrite() != "" {
			c.errorf(rp.Field("prefixRewrite"), "cannot be set together with uri; uri replaces the whole path, prefixRewrite only the matched prefix")
		}
		if rd.GetPrefixRewrite() != "" {
			for i, m := range r.GetMatch() {
				if m.GetUri() == nil {
					continue
				}
				if _, ok := m.GetUri().GetMatchType().(*networking.StringMatch_Prefix); !ok {
					c.errorf(p.Field("match").Index(i).Field("uri"), "redirect.prefixRewrite needs every uri match to be a prefix match")
				}
			}
		}
		if sc := rd.GetScheme(); sc != "" && sc != "http" && sc != "https" {
			c.errorf(rp.Field("scheme"), "%q is not allowed; want http or https", sc)
		}
		switch rd.GetRedirectCode() {
		case 0, 301, 302, 303, 307, 308:
		default:
			c.errorf(rp.Field("redirectCode"), "%d is not a redirect code; want 301, 302, 303, 307 or 308", rd.GetRedirectCode())
		}
		if _, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok {
			c.checkPort(rp.Field("port"), rd.GetPort())
		}
	}
	if dr := r.GetDirectResponse(); dr != nil {
		if s := dr.GetStatus(); s < 200 || s > 599 {
			c.errorf(p.Field("directResponse").Field("status"), "%d must be between 200 and 599", s)
		}
		if n := len(dr.GetBody().GetString_()) + len(dr.GetBody().GetBytes()); n > maxDirectBody {
			c.errorf(p.Field("directResponse").Field("body"), "body is %d bytes; a direct response body must be at most 1MiB (serve large content from a service)", n)
		}
	}
	if rw := r.GetRewrite(); rw != nil {
		rp := p.Field("rewrite")
		if rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
			c.errorf(rp, "uri and uriRegexRewrite are exclusive; set only one")
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			c.checkRegex(rp.Field("uriRegexRewrite").Field("match"), rr.GetMatch())
			if rr.GetRewrite() == "" {
				c.errorf(rp.Field("uriRegexRewrite").Field("rewrite"), "missing; uriRegexRewrite needs both match and rewrite (use \"/\" to replace the match with a single slash)")
			}
		}
		if rw.GetUri() == "" && rw.GetAuthority() == "" && rw.GetUriRegexRewrite() == nil {
			c.errorf(rp, "needs uri, authority or uriRegexRewrite")
		}
	}
	c.checkDuration(p.Field("timeout"), r.GetTimeout())
	if rt := r.GetRetries(); rt != nil {
		rp := p.Field("retries")
		if rt.GetAttempts() < 0 {
			c.errorf(rp.Field("attempts"), "%d must be zero or more (it counts retries, not tries)", rt.GetAttempts())
		}
		if rt.GetAttempts() == 0 && (rt.GetPerTryTimeout() != nil || rt.GetRetryOn() != "" || rt.GetRetryRemoteLocalities() != nil) {
			c.errorf(rp.Field("attempts"), "0 turns retries off, yet perTryTimeout, retryOn or retryRemoteLocalities is set; set attempts to 1 or more, or remove the other fields")
		}
		c.checkDuration(rp.Field("perTryTimeout"), rt.GetPerTryTimeout())
		c.checkDuration(rp.Field("backoff"), rt.GetBackoff())
		if rt.GetRetryOn() != "" {
			c.checkRetryOn(rp.Field("retryOn"), rt.GetRetryOn())
		}
	}
	if f := r.GetFault(); f != nil {
		c.fault(p.Field("fault"), f)
	}
	if r.GetMirror() != nil {
		c.destination(p.Field("mirror"), r.GetMirror())
		if len(r.GetMirrors()) > 0 {
			c.errorf(p.Field("mirrors"), "mirror and mirrors are exclusive; use mirrors")
		}
	}
	if r.GetMirrorPercent() != nil {
		if r.GetMirrorPercent().GetValue() > 100 {
			c.errorf(p.Field("mirrorPercent"), "%d must be between 0 and 100", r.GetMirrorPercent().GetValue())
		}
		c.warnf(p.Field("mirrorPercent"), "deprecated; use mirrorPercentage (a fraction such as {value: 12.5})")
	}
	if r.GetMirrorPercentage() != nil {
		c.checkPercent(p.Field("mirrorPercentage").Field("value"), r.GetMirrorPercentage().GetValue())
	}
	if (r.GetMirrorPercent() != nil || r.GetMirrorPercentage() != nil) && r.GetMirror() == nil {
		c.warnf(p.Field("mirrorPercentage"), "set without mirror, so it has no effect; add a mirror destination or remove it")
	}
	for i, m := range r.GetMirrors() {
		mp := p.Field("mirrors").Index(i)
		c.destination(mp.Field("destination"), m.GetDestination())
		if m.GetPercentage() != nil {
			c.checkPercent(mp.Field("percentage").Field("value"), m.GetPercentage().GetValue())
		}
	}
	if cp := r.GetCorsPolicy(); cp != nil {
		pp := p.Field("corsPolicy")
		for i, o := range cp.GetAllowOrigins() {
			c.stringMatch(pp.Field("allowOrigins").Index(i), o, false)
			if o.GetExact() == "" && o.GetPrefix() == "" && o.GetRegex() == "" {
				c.errorf(pp.Field("allowOrigins").Index(i), "empty origin match; want exact, prefix or regex with a value, such as exact: https://example.com")
			}
		}
		c.checkDuration(pp.Field("maxAge"), cp.GetMaxAge())
		for i, m := range cp.GetAllowMethods() {
			if !httpMethods[m] {
				c.errorf(pp.Field("allowMethods").Index(i), "%q is not an HTTP method; want e.g. GET, POST, PUT, DELETE, OPTIONS", m)
			}
		}
		for _, f := range []struct {
			name  string
			names []string
		}{{"allowHeaders", cp.GetAllowHeaders()}, {"exposeHeaders", cp.GetExposeHeaders()}} {
			for i, h := range f.names {
				if h != "*" {
					c.checkHeaderName(pp.Field(f.name).Index(i), h)
				}
			}
		}
		if ma := cp.GetMaxAge(); ma != nil && ma.GetNanos() != 0 {
			c.errorf(pp.Field("maxAge"), "%s is not whole seconds; browsers cache preflight answers to the second", ma.AsDuration())
		}
	}
	c.headerOps(p.Field("headers"), r.GetHeaders())
	c.checkAuthorityOnce(p, r)
}

// maxDirectBody bounds a directResponse body; larger bodies weigh on every
// proxy's config.
const maxDirectBody = 1 << 20

// checkAuthorityOnce rejects a route that rewrites the authority in more
// than one place (rewrite.authority, and :authority or host set or added in
// headers.request): only one of them could win.
func (c *checker) checkAuthorityOnce(p Path, r *networking.HTTPRoute) {
	var where []Path
	if r.GetRewrite().GetAuthority() != "" {
		where = append(where, p.Field("rewrite").Field("authority"))
	}
	req := r.GetHeaders().GetRequest()
	for _, op := range []struct {
		name string
		m    map[string]string
	}{{"set", req.GetSet()}, {"add", req.GetAdd()}} {
		for _, k := range sortedKeys(op.m) {
			if isAuthorityHeader(k) {
				where = append(where, p.Field("headers").Field("request").Field(op.name).Key(k))
			}
		}
	}
	if len(where) > 1 {
		c.errorf(where[1], "the authority is already rewritten at %s; rewrite it in one place only", where[0])
	}
}

func isAuthorityHeader(name string) bool {
	return strings.EqualFold(name, ":authority") || strings.EqualFold(name, "host")
}

var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true,
	"OPTIONS": true, "TRACE": true, "PATCH": true, "*": true,
}

func (c *checker) checkNamespaceName(p Path, ns string) {
	if !dnsLabelRE.MatchString(ns) || ns != strings.ToLower(ns) || len(ns) > 63 {
		c.errorf(p, "%q is not a namespace name (lower-case letters, digits and '-')", ns)
	}
}

func (c *checker) httpMatch(p Path, m *networking.HTTPMatchRequest, boundToMesh bool) {
	// An empty uri prefix matches every path; for the other fields an
	// empty prefix is a mistake.
	c.stringMatch(p.Field("uri"), m.GetUri(), true)
	c.stringMatch(p.Field("scheme"), m.GetScheme(), false)
	c.stringMatch(p.Field("method"), m.GetMethod(), false)
	c.stringMatch(p.Field("authority"), m.GetAuthority(), false)
	for _, k := range sortedKeys(m.GetHeaders()) {
		hp := p.Field("headers").Key(k)
		c.checkMatchHeaderName(hp, k, boundToMesh)
		c.stringMatchInMap(hp, m.GetHeaders()[k])
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		hp := p.Field("withoutHeaders").Key(k)
		c.checkMatchHeaderName(hp, k, boundToMesh)
		// In withoutHeaders, regex "*" means "the header is present".
		if m.GetWithoutHeaders()[k].GetRegex() != "*" {
			c.stringMatchInMap(hp, m.GetWithoutHeaders()[k])
		}
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		qp := p.Field("queryParams").Key(k)
		if k == "" {
			c.errorf(qp, "empty query parameter name")
		}
		c.stringMatchInMap(qp, m.GetQueryParams()[k])
	}
	c.checkOptionalPort(p.Field("port"), m.GetPort())
	c.checkLabels(p.Field("sourceLabels"), m.GetSourceLabels())
	for i, g := range m.GetGateways() {
		c.checkGatewayName(p.Field("gateways").Index(i), g)
	}
	if ns := m.GetSourceNamespace(); ns != "" {
		c.checkNamespaceName(p.Field("sourceNamespace"), ns)
	}
}

// stringMatchInMap checks a header or query match; an empty match (no
// exact/prefix/regex) means "present" in Istio and is allowed.
func (c *checker) stringMatchInMap(p Path, m *networking.StringMatch) {
	if m == nil {
		return
	}
	c.stringMatch(p, m, false)
}

func (c *checker) stringMatch(p Path, m *networking.StringMatch, allowEmptyPrefix bool) {
	if m == nil {
		return
	}
	switch t := m.GetMatchType().(type) {
	case *networking.StringMatch_Regex:
		c.checkRegex(p.Field("regex"), t.Regex)
	case *networking.StringMatch_Prefix:
		if t.Prefix == "" && !allowEmptyPrefix {
			c.errorf(p.Field("prefix"), "empty prefix; name a prefix, or leave the field out to match any value")
		}
	}
}

// jwtClaimHeader is the pseudo header name that routes on a JWT claim
// ("@request.auth.claims.group" or "@request.auth.claims[group]").
const jwtClaimHeader = "@request.auth.claims"

func isJWTClaimHeader(name string) bool {
	if !strings.HasPrefix(strings.ToLower(name), jwtClaimHeader) {
		return false
	}
	rest := name[len(jwtClaimHeader):]
	return (strings.HasPrefix(rest, ".") && len(rest) > 1) || (strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && len(rest) > 2)
}

// checkMatchHeaderName checks a header name in a match. JWT claim routing
// works only at a gateway in Istio, and not at all in Trellis yet:
// trellis-proxy selects the route before its jwt_authn filter runs.
func (c *checker) checkMatchHeaderName(p Path, name string, boundToMesh bool) {
	if !isJWTClaimHeader(name) {
		c.checkHeaderName(p, name)
		return
	}
	if boundToMesh {
		c.errorf(p, "routing on a JWT claim (%q) works only in a VirtualService bound to gateways (without \"mesh\")", name)
		return
	}
	c.errorf(p, "routing on a JWT claim (%q) is not supported yet: trellis-proxy selects the route before the JWT is verified; authorize on request.auth.claims in an AuthorizationPolicy instead, or match a header the client sends", name)
}

func (c *checker) checkHeaderName(p Path, name string) {
	if name == "" {
		c.errorf(p, "empty header name")
		return
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/;<=>?@[\\]{}", r) {
			c.errorf(p, "header name %q contains %q, which is not allowed in an HTTP header name", name, r)
			return
		}
	}
}

func (c *checker) headerOps(p Path, h *networking.Headers) {
	if h == nil {
		return
	}
	// Requests may set or add the authority (":authority" or "host");
	// nothing else that starts with ':' can be changed, and responses have
	// no authority to change.
	ops := func(op Path, o *networking.Headers_HeaderOperations, request bool) {
		if o == nil {
			return
		}
		for _, f := range []struct {
			name string
			m    map[string]string
		}{{"set", o.GetSet()}, {"add", o.GetAdd()}} {
			for _, k := range sortedKeys(f.m) {
				kp := op.Field(f.name).Key(k)
				c.checkHeaderOpName(kp, k, request)
				c.checkHeaderValue(kp, f.m[k])
			}
		}
		for i, k := range o.GetRemove() {
			c.checkHeaderOpName(op.Field("remove").Index(i), k, false)
		}
	}
	ops(p.Field("request"), h.GetRequest(), true)
	ops(p.Field("response"), h.GetResponse(), false)
}

func (c *checker) checkHeaderOpName(p Path, name string, authorityAllowed bool) {
	if isAuthorityHeader(name) {
		if !authorityAllowed {
			c.errorf(p, "%q cannot be removed or set on a response; only request set and add may change the authority (or use rewrite.authority)", name)
		}
		return
	}
	if strings.HasPrefix(name, ":") {
		c.errorf(p, "pseudo-header %q cannot be changed; use rewrite for :authority and :path", name)
		return
	}
	c.checkHeaderName(p, name)
}

// checkHeaderValue checks a header value Envoy will format: no control
// characters (tab is fine), and '%' either doubled ("100%%") or opening a
// %VARIABLE% that a second '%' closes.
func (c *checker) checkHeaderValue(p Path, v string) {
	for _, r := range v {
		if (r < ' ' && r != '\t') || r == 0x7f {
			c.errorf(p, "header value %q contains control character %q", v, r)
			return
		}
	}
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			i++
			continue
		}
		end := strings.IndexByte(v[i+1:], '%')
		if end < 0 {
			c.errorf(p, "header value %q has an unescaped '%%'; write %%%% for a literal percent sign, or close the variable as in %%HOSTNAME%%", v)
			return
		}
		i += end + 1
	}
}

// retryOnPolicies are the retry conditions Envoy (and so Istio) accepts.
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"envoy-ratelimited": true, "retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	"retriable-headers": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

func (c *checker) checkRetryOn(p Path, s string) {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if retryOnPolicies[part] {
			continue
		}
		if n, err := strconv.Atoi(part); err == nil && n >= 100 && n <= 599 {
			continue
		}
		c.errorf(p, "%q is not a retry condition; want a comma-separated list of 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable or HTTP status codes", part)
	}
}

// isGRPCStatusName reports whether s names a gRPC status (UNAVAILABLE), as
// grpc's codes spell them in JSON.
func isGRPCStatusName(s string) bool {
	var c codes.Code
	return c.UnmarshalJSON([]byte(strconv.Quote(s))) == nil
}

func (c *checker) fault(p Path, f *networking.HTTPFaultInjection) {
	if f.GetDelay() == nil && f.GetAbort() == nil {
		c.errorf(p, "needs delay or abort")
	}
	if d := f.GetDelay(); d != nil {
		dp := p.Field("delay")
		if d.GetPercent() < 0 || d.GetPercent() > 100 {
			c.errorf(dp.Field("percent"), "%d must be between 0 and 100", d.GetPercent())
		}
		if d.GetPercentage() != nil {
			c.checkFractionalPercent(dp.Field("percentage").Field("value"), d.GetPercentage().GetValue())
		}
		switch t := d.GetHttpDelayType().(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if t.FixedDelay == nil {
				c.errorf(dp.Field("fixedDelay"), "missing; want a duration such as \"5s\"")
			}
			c.checkDuration(dp.Field("fixedDelay"), t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			c.errorf(dp.Field("exponentialDelay"), "not supported (Istio does not implement it either); use fixedDelay")
		default:
			c.errorf(dp.Field("fixedDelay"), "missing; a delay needs fixedDelay, such as \"5s\"")
		}
	}
	if a := f.GetAbort(); a != nil {
		ap := p.Field("abort")
		if a.GetPercentage() != nil {
			c.checkFractionalPercent(ap.Field("percentage").Field("value"), a.GetPercentage().GetValue())
		}
		switch t := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				c.errorf(ap.Field("httpStatus"), "%d must be between 200 and 599", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if !isGRPCStatusName(t.GrpcStatus) {
				if n, err := strconv.Atoi(t.GrpcStatus); err != nil || n < 0 || n > 16 {
					c.errorf(ap.Field("grpcStatus"), "%q is not a gRPC status; want a name such as UNAVAILABLE or a code 0-16", t.GrpcStatus)
				}
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			c.errorf(ap.Field("http2Error"), "not supported (Istio does not implement it either); use httpStatus or grpcStatus")
		case nil:
			c.errorf(ap.Field("httpStatus"), "missing; an abort needs httpStatus (200-599) or grpcStatus")
		}
	}
}
