package translate

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// httpRoutes turns a VirtualService's http[] into Envoy routes for one
// listener port, in order: each http route gives one Envoy route per match
// that applies to this gateway ("mesh" for sidecars), port and source.
func (s *scope) httpRoutes(vs *virtualService, gateway string, port uint32, svc *registry.Service) []*routev3.Route {
	var out []*routev3.Route
	for _, hr := range s.expandDelegates(vs) {
		var matches []*networking.HTTPMatchRequest
		if len(hr.GetMatch()) == 0 {
			if !contains(vs.gateways, gateway) {
				continue
			}
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range hr.GetMatch() {
			if s.httpMatchApplies(m, vs, gateway, port) {
				matches = append(matches, m)
			}
		}
		if len(matches) == 0 {
			continue
		}
		for _, m := range matches {
			r := s.route(vs, hr, port)
			r.Match = routeMatch(m)
			r.Decorator = routeDecorator(r, vs.res.Name, port)
			if m.GetName() != "" {
				if r.Name != "" {
					r.Name += "." + m.GetName()
				} else {
					r.Name = m.GetName()
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// httpMatchApplies checks the parts of a match decided at translation time:
// gateways, port, the calling proxy's labels and namespace.
func (s *scope) httpMatchApplies(m *networking.HTTPMatchRequest, vs *virtualService, gateway string, port uint32) bool {
	gws := vs.gateways
	if len(m.GetGateways()) > 0 {
		gws = resolveGateways(m.GetGateways(), nsOf(vs.res))
	}
	if !contains(gws, gateway) {
		return false
	}
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	if len(m.GetSourceLabels()) > 0 && !registry.Matches(m.GetSourceLabels(), s.proxy.Labels) {
		return false
	}
	if m.GetSourceNamespace() != "" && m.GetSourceNamespace() != s.proxy.Namespace {
		return false
	}
	return true
}

func routeMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapBool(false)
	}
	for _, pseudo := range []struct {
		name string
		sm   *networking.StringMatch
	}{{":scheme", m.GetScheme()}, {":method", m.GetMethod()}, {":authority", m.GetAuthority()}} {
		if pseudo.sm != nil {
			rm.Headers = append(rm.Headers, headerMatcher(pseudo.name, pseudo.sm, false))
		}
	}
	for _, k := range sortedKeys(m.GetHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetHeaders()[k], false))
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetWithoutHeaders()[k], true))
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		qm := &routev3.QueryParameterMatcher{Name: k}
		if sm := stringMatcher(m.GetQueryParams()[k]); sm != nil {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

// stringMatcher converts an Istio StringMatch; nil for an empty one
// (which means "present").
func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch v := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return exactMatch(v.Exact)
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		return regexMatch(v.Regex)
	}
	return nil
}

func headerMatcher(name string, sm *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if m := stringMatcher(sm); m != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: m}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// route builds the action part of one http route (everything but the match).
func (s *scope) route(vs *virtualService, hr *networking.HTTPRoute, port uint32) *routev3.Route {
	if vs.meta == nil {
		vs.meta = istioMetadata(map[string]*structpb.Value{
			"config": structpb.NewStringValue(configPath("virtual-service", vs.res.Namespace, vs.res.Name)),
		})
	}
	r := &routev3.Route{Name: hr.GetName(), Metadata: vs.meta}
	addHeaderOps(r, hr.GetHeaders())
	switch {
	case hr.GetRedirect() != nil:
		r.Action = &routev3.Route_Redirect{Redirect: redirect(hr.GetRedirect())}
	case hr.GetDirectResponse() != nil:
		dr := &routev3.DirectResponseAction{Status: hr.GetDirectResponse().GetStatus()}
		if b := hr.GetDirectResponse().GetBody(); b != nil {
			if str := b.GetString_(); str != "" {
				dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: str}}
			} else if by := b.GetBytes(); len(by) > 0 {
				dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: by}}
			}
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	default:
		r.Action = &routev3.Route_Route{Route: s.routeAction(vs, hr, port, r)}
	}
	perFilter := map[string]*anypb.Any{}
	if f := fault(hr.GetFault()); f != nil {
		perFilter[FaultFilter] = mustAny(f)
	}
	if c := cors(hr.GetCorsPolicy()); c != nil {
		perFilter[CorsFilter] = mustAny(c)
	}
	if len(perFilter) > 0 {
		r.TypedPerFilterConfig = perFilter
	}
	return r
}

func (s *scope) routeAction(vs *virtualService, hr *networking.HTTPRoute, port uint32, r *routev3.Route) *routev3.RouteAction {
	a := &routev3.RouteAction{Timeout: dur(0)}
	if hr.GetTimeout() != nil {
		a.Timeout = hr.GetTimeout()
	}
	var weighted []*routev3.WeightedCluster_ClusterWeight
	var firstHost string
	for _, d := range hr.GetRoute() {
		if d.GetWeight() == 0 && len(hr.GetRoute()) > 1 {
			continue // a zero weight next to others takes nothing
		}
		name := s.destinationCluster(vs, d.GetDestination(), port)
		if firstHost == "" {
			firstHost = name
		}
		cw := &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: u32v(uint32(d.GetWeight()))}
		if h := d.GetHeaders(); h != nil {
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOps(h.GetRequest())
			cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = headerOps(h.GetResponse())
		}
		weighted = append(weighted, cw)
	}
	switch len(weighted) {
	case 0:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: BlackHoleCluster}
	case 1:
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: weighted[0].Name}
		r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, weighted[0].RequestHeadersToAdd...)
		r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, weighted[0].RequestHeadersToRemove...)
		r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, weighted[0].ResponseHeadersToAdd...)
		r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, weighted[0].ResponseHeadersToRemove...)
	default:
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: weighted}}
	}
	if rw := hr.GetRewrite(); rw != nil {
		if rw.GetUri() != "" {
			a.PrefixRewrite = rw.GetUri()
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: rr.GetMatch()}, Substitution: rr.GetRewrite()}
		}
		if rw.GetAuthority() != "" {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
		}
	}
	if hr.GetRetries() == nil {
		a.RetryPolicy = s.defaultRetryPolicy()
	} else {
		a.RetryPolicy = retryPolicy(hr.GetRetries(), true)
	}
	a.RequestMirrorPolicies = s.mirrors(vs, hr, port)
	if firstHost != "" {
		a.HashPolicy = s.hashPolicy(firstHost)
	}
	return a
}

// defaultRoute is the route of a service with no VirtualService.
func (s *scope) defaultRoute(svc *registry.Service, port uint32) *routev3.Route {
	name := OutboundClusterName(port, "", svc.Hostname)
	return &routev3.Route{
		Name:      "default",
		Match:     &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Decorator: &routev3.Decorator{Operation: svc.Hostname + ":" + u32(port) + "/*"},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
			Timeout:          dur(0),
			RetryPolicy:      s.defaultRetryPolicy(),
			HashPolicy:       s.hashPolicy(name),
		}},
	}
}

// defaultRetryPolicy is Istio's default, built once per translation and
// shared by every route that has no retries block (outputs are read-only).
func (s *scope) defaultRetryPolicy() *routev3.RetryPolicy {
	if s.defaultRetry == nil {
		s.defaultRetry = retryPolicy(nil, false)
	}
	return s.defaultRetry
}

// Istio's retry defaults.
const (
	DefaultRetryOn       = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	DefaultRetryAttempts = 2
)

// retryPolicy converts Istio retries; with no retries block Istio's default
// applies (2 retries on DefaultRetryOn and 503), and an explicit attempts of
// 0 turns retries off.
func retryPolicy(r *networking.HTTPRetry, explicit bool) *routev3.RetryPolicy {
	if explicit && r.GetAttempts() == 0 {
		return nil
	}
	p := &routev3.RetryPolicy{
		RetryOn:                       DefaultRetryOn,
		NumRetries:                    u32v(DefaultRetryAttempts),
		RetriableStatusCodes:          []uint32{503},
		HostSelectionRetryMaxAttempts: 5,
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{previousHosts()},
	}
	if !explicit {
		return p
	}
	p.NumRetries = u32v(uint32(r.GetAttempts()))
	if r.GetPerTryTimeout() != nil {
		p.PerTryTimeout = r.GetPerTryTimeout()
	}
	if r.GetRetryOn() != "" {
		var on []string
		var codes []uint32
		for _, part := range strings.Split(r.GetRetryOn(), ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if n, err := strconv.ParseUint(part, 10, 32); err == nil {
				codes = append(codes, uint32(n))
				continue
			}
			on = append(on, part)
		}
		if len(codes) > 0 && !contains(on, "retriable-status-codes") {
			on = append(on, "retriable-status-codes")
		}
		p.RetryOn = strings.Join(on, ",")
		p.RetriableStatusCodes = codes
	}
	if r.GetRetryIgnorePreviousHosts() != nil && !r.GetRetryIgnorePreviousHosts().GetValue() {
		p.RetryHostPredicate = nil
		p.HostSelectionRetryMaxAttempts = 0
	}
	if r.GetBackoff() != nil {
		p.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: r.GetBackoff()}
	}
	return p
}

func (s *scope) mirrors(vs *virtualService, hr *networking.HTTPRoute, port uint32) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	if m := hr.GetMirror(); m != nil {
		pct := 100.0
		switch {
		case hr.GetMirrorPercentage() != nil:
			pct = hr.GetMirrorPercentage().GetValue()
		case hr.GetMirrorPercent() != nil:
			pct = float64(hr.GetMirrorPercent().GetValue())
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{Cluster: s.destinationCluster(vs, m, port), RuntimeFraction: runtimePercent(pct)})
	}
	for _, m := range hr.GetMirrors() {
		pct := 100.0
		if m.GetPercentage() != nil {
			pct = m.GetPercentage().GetValue()
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{Cluster: s.destinationCluster(vs, m.GetDestination(), port), RuntimeFraction: runtimePercent(pct)})
	}
	return out
}

// hashPolicy is the consistent-hash key of the cluster's DestinationRule,
// if it has one.
func (s *scope) hashPolicy(cluster string) []*routev3.RouteAction_HashPolicy {
	_, portS, subset, host, ok := ParseClusterName(cluster)
	if !ok {
		return nil
	}
	port, _ := strconv.ParseUint(portS, 10, 32)
	ch := trafficPolicy(s.destinationRule(host), uint32(port), subset).lb.GetConsistentHash()
	if ch == nil {
		return nil
	}
	hp := &routev3.RouteAction_HashPolicy{}
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(k.HttpHeaderName)}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath(), Ttl: k.HttpCookie.GetTtl()}
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}

func redirect(rd *networking.HTTPRedirect) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	switch {
	case rd.GetUri() != "":
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	case rd.GetPrefixRewrite() != "":
		a.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: rd.GetPrefixRewrite()}
	}
	if rd.GetScheme() != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if p := rd.GetPort(); p != 0 {
		a.PortRedirect = p
	}
	switch rd.GetRedirectCode() {
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	}
	return a
}

func addHeaderOps(r *routev3.Route, h *networking.Headers) {
	if h == nil {
		return
	}
	r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerOps(h.GetRequest())
	r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerOps(h.GetResponse())
}

// headerOps converts set (overwrite), add (append) and remove.
func headerOps(ops *networking.Headers_HeaderOperations) ([]*corev3.HeaderValueOption, []string) {
	if ops == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, k := range sortedKeys(ops.GetSet()) {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetSet()[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range sortedKeys(ops.GetAdd()) {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetAdd()[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return add, append([]string(nil), ops.GetRemove()...)
}

func cors(c *networking.CorsPolicy) *corsv3.CorsPolicy {
	if c == nil {
		return nil
	}
	out := &corsv3.CorsPolicy{
		AllowMethods:     strings.Join(c.GetAllowMethods(), ","),
		AllowHeaders:     strings.Join(c.GetAllowHeaders(), ","),
		ExposeHeaders:    strings.Join(c.GetExposeHeaders(), ","),
		AllowCredentials: c.GetAllowCredentials(),
	}
	for _, o := range c.GetAllowOrigin() {
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, exactMatch(o))
	}
	for _, o := range c.GetAllowOrigins() {
		if m := stringMatcher(o); m != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, m)
		}
	}
	if c.GetMaxAge() != nil {
		out.MaxAge = strconv.FormatInt(c.GetMaxAge().GetSeconds(), 10)
	}
	if c.GetUnmatchedPreflights() == networking.CorsPolicy_IGNORE {
		out.ForwardNotMatchingPreflights = wrapBool(false)
	}
	return out
}
