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
	seenHosts := map[string]bool{}
	for i, h := range vs.GetHosts() {
		p := spec.Field("hosts").Index(i)
		if seenHosts[h] {
			c.warnf(p, "duplicate host %q", h)
			continue
		}
		seenHosts[h] = true
		if isIP(h) {
			continue
		}
		if !c.checkFQDN(p, h, true) {
			continue
		}
		if h == "*" && boundToMesh {
			c.errorf(p, "wildcard host \"*\" is not allowed for a VirtualService bound to the mesh; list gateways (without \"mesh\") or name the hosts")
		}
	}
	c.checkExportTo(spec.Field("exportTo"), vs.GetExportTo())

	names := map[string]bool{}
	for i, r := range vs.GetHttp() {
		p := spec.Field("http").Index(i)
		if r.GetName() != "" {
			if names[r.GetName()] {
				c.warnf(p.Field("name"), "route name %q is used more than once", r.GetName())
			}
			names[r.GetName()] = true
		}
		c.httpRoute(p, r, delegate)
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

func (c *checker) httpRoute(p Path, r *networking.HTTPRoute, inDelegate bool) {
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
	if (hasRedirect || hasDirect) && (r.GetFault() != nil || r.GetMirror() != nil || len(r.GetMirrors()) > 0) {
		c.warnf(p, "fault and mirror act on routed traffic; with redirect or directResponse they have no effect")
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
		c.httpMatch(p.Field("match").Index(i), m)
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
		if rd.GetUri() == "" && rd.GetAuthority() == "" && rd.GetScheme() == "" && rd.GetRedirectPort() == nil {
			c.errorf(rp, "needs at least one of uri, authority, scheme, port or derivePort")
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
	}
	if rw := r.GetRewrite(); rw != nil {
		rp := p.Field("rewrite")
		if rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
			c.errorf(rp, "uri and uriRegexRewrite are exclusive; set only one")
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			c.checkRegex(rp.Field("uriRegexRewrite").Field("match"), rr.GetMatch())
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
	if r.GetMirrorPercent() != nil && r.GetMirrorPercent().GetValue() > 100 {
		c.errorf(p.Field("mirrorPercent"), "%d must be between 0 and 100", r.GetMirrorPercent().GetValue())
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
			c.stringMatch(pp.Field("allowOrigins").Index(i), o)
		}
		c.checkDuration(pp.Field("maxAge"), cp.GetMaxAge())
		for i, m := range cp.GetAllowMethods() {
			if !httpMethods[m] {
				c.errorf(pp.Field("allowMethods").Index(i), "%q is not an HTTP method; want e.g. GET, POST, PUT, DELETE, OPTIONS", m)
			}
		}
	}
	c.headerOps(p.Field("headers"), r.GetHeaders())
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

func (c *checker) httpMatch(p Path, m *networking.HTTPMatchRequest) {
	c.stringMatch(p.Field("uri"), m.GetUri())
	c.stringMatch(p.Field("scheme"), m.GetScheme())
	c.stringMatch(p.Field("method"), m.GetMethod())
	c.stringMatch(p.Field("authority"), m.GetAuthority())
	for _, k := range sortedKeys(m.GetHeaders()) {
		hp := p.Field("headers").Key(k)
		c.checkHeaderName(hp, k)
		c.stringMatchInMap(hp, m.GetHeaders()[k])
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		hp := p.Field("withoutHeaders").Key(k)
		c.checkHeaderName(hp, k)
		c.stringMatchInMap(hp, m.GetWithoutHeaders()[k])
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
	c.stringMatch(p, m)
}

func (c *checker) stringMatch(p Path, m *networking.StringMatch) {
	if m == nil {
		return
	}
	if re, ok := m.GetMatchType().(*networking.StringMatch_Regex); ok {
		c.checkRegex(p.Field("regex"), re.Regex)
	}
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
	ops := func(op Path, o *networking.Headers_HeaderOperations) {
		if o == nil {
			return
		}
		for _, k := range sortedKeys(o.GetSet()) {
			c.checkHeaderOpName(op.Field("set").Key(k), k)
		}
		for _, k := range sortedKeys(o.GetAdd()) {
			c.checkHeaderOpName(op.Field("add").Key(k), k)
		}
		for i, k := range o.GetRemove() {
			c.checkHeaderOpName(op.Field("remove").Index(i), k)
		}
	}
	ops(p.Field("request"), h.GetRequest())
	ops(p.Field("response"), h.GetResponse())
}

func (c *checker) checkHeaderOpName(p Path, name string) {
	if strings.HasPrefix(name, ":") {
		c.errorf(p, "pseudo-header %q cannot be changed; use rewrite for :authority and :path", name)
		return
	}
	c.checkHeaderName(p, name)
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
			c.checkPercent(dp.Field("percentage").Field("value"), d.GetPercentage().GetValue())
		}
		switch t := d.GetHttpDelayType().(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if t.FixedDelay == nil {
				c.errorf(dp.Field("fixedDelay"), "missing; want a duration such as \"5s\"")
			}
			c.checkDuration(dp.Field("fixedDelay"), t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			c.checkDuration(dp.Field("exponentialDelay"), t.ExponentialDelay)
		default:
			c.errorf(dp.Field("fixedDelay"), "missing; a delay needs fixedDelay, such as \"5s\"")
		}
	}
	if a := f.GetAbort(); a != nil {
		ap := p.Field("abort")
		if a.GetPercentage() != nil {
			c.checkPercent(ap.Field("percentage").Field("value"), a.GetPercentage().GetValue())
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
		case nil:
			c.errorf(ap.Field("httpStatus"), "missing; an abort needs httpStatus (200-599) or grpcStatus")
		}
	}
}
