package translate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// The RBAC HTTP filters, in the order Istio puts them before the others:
// AUDIT (action LOG), DENY, then ALLOW.
const (
	RBACAuditFilter = "envoy.filters.http.rbac.audit"
	RBACDenyFilter  = "envoy.filters.http.rbac.deny"
	RBACFilter      = "envoy.filters.http.rbac"
	// NetworkRBACFilterName is the network filter's name; the deny and
	// allow stat prefixes tell its two instances apart.
	NetworkRBACFilterName = "envoy.filters.network.rbac"
	NetworkRBACDenyFilter = "rbac_deny"
	NetworkRBACFilter     = "rbac"
)

// defaultTrustDomain is Istio's default trust domain, which serviceAccounts
// identities are in.
const defaultTrustDomain = "cluster.local"

// authorizationPolicies returns the AuthorizationPolicies that apply to the
// proxy (see workloadPolicies). Policies with targetRef(s) apply to none
// (Trellis flags them), CUSTOM ones never reach translation (validation
// rejects them).
func (s *scope) authorizationPolicies() []*config.Resource {
	return s.workloadPolicies(config.KindAuthorizationPolicy, func(r *config.Resource) (map[string]string, bool) {
		ap, ok := r.Spec.(*security.AuthorizationPolicy)
		if !ok || ap.GetAction() == security.AuthorizationPolicy_CUSTOM || ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
			return nil, false
		}
		return ap.GetSelector().GetMatchLabels(), true
	})
}

// workloadPolicies returns the resources of kind that apply to the proxy,
// sorted by namespace/name: those of the root namespace (mesh-wide without
// a selector, else on every workload the selector matches) and those of
// the proxy's namespace without a selector or with one matching its
// labels. selector gives a resource's selector labels, or false for one
// that applies to no workload.
func (s *scope) workloadPolicies(kind string, selector func(*config.Resource) (map[string]string, bool)) []*config.Resource {
	if s.in.Config == nil {
		return nil
	}
	var out []*config.Resource
	for _, r := range s.in.Config.List(kind) {
		labels, ok := selector(r)
		if !ok {
			continue
		}
		if ns := nsOf(r); ns != s.mesh.RootNamespace && ns != s.proxy.Namespace {
			continue
		}
		if !registry.Matches(labels, s.proxy.Labels) {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := nsOf(out[i]), nsOf(out[j]); a != b {
			return a < b
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// rbacSets translates the policies that apply to the proxy into RBAC
// rule sets by action, for HTTP chains or (tcp) for TCP ones. Istio's
// evaluation order follows from the order of the filters holding them: a
// DENY policy that matches denies; with no ALLOW policy the request is
// allowed; else an ALLOW policy must match. An ALLOW policy without
// rules (spec: {}) contributes no policy, so it allows nothing.
func (s *scope) rbacSets(tcp bool) map[security.AuthorizationPolicy_Action]*rbacconfigv3.RBAC {
	byAction := map[security.AuthorizationPolicy_Action]*rbacconfigv3.RBAC{}
	for _, r := range s.authorizationPolicies() {
		ap := r.Spec.(*security.AuthorizationPolicy)
		if tcp && ap.GetAction() == security.AuthorizationPolicy_AUDIT {
			continue
		}
		set := byAction[ap.GetAction()]
		if set == nil {
			set = &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{}}
			switch ap.GetAction() {
			case security.AuthorizationPolicy_DENY:
				set.Action = rbacconfigv3.RBAC_DENY
			case security.AuthorizationPolicy_AUDIT:
				set.Action = rbacconfigv3.RBAC_LOG
			}
			byAction[ap.GetAction()] = set
		}
		for i, rule := range ap.GetRules() {
			broad := ap.GetAction() != security.AuthorizationPolicy_ALLOW
			if tcp {
				if rule = tcpRule(rule, broad); rule == nil {
					continue
				}
			}
			p := s.rbacPolicy(rule, broad)
			if p == nil {
				continue
			}
			set.Policies[fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", nsOf(r), r.Name, i)] = p
		}
	}
	return byAction
}

// rbacOrder is the order of the RBAC filters and their names.
var rbacOrder = []struct {
	action      security.AuthorizationPolicy_Action
	http, netwk string
}{
	{security.AuthorizationPolicy_AUDIT, RBACAuditFilter, ""},
	{security.AuthorizationPolicy_DENY, RBACDenyFilter, NetworkRBACDenyFilter},
	{security.AuthorizationPolicy_ALLOW, RBACFilter, NetworkRBACFilter},
}

// keep reports whether a rule set becomes a filter: a DENY or AUDIT set
// without policies does nothing, an ALLOW set without them denies all.
func keep(action security.AuthorizationPolicy_Action, set *rbacconfigv3.RBAC) bool {
	return set != nil && (action == security.AuthorizationPolicy_ALLOW || len(set.Policies) > 0)
}

// rbacFilters returns the RBAC HTTP filters of the policies that apply to
// the proxy, nil when none applies.
func (s *scope) rbacFilters() []*hcmv3.HttpFilter {
	sets := s.rbacSets(false)
	var out []*hcmv3.HttpFilter
	for _, f := range rbacOrder {
		if set := sets[f.action]; keep(f.action, set) {
			out = append(out, &hcmv3.HttpFilter{Name: f.http, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbacv3.RBAC{Rules: set})}})
		}
	}
	return out
}

// networkRBACFilters returns the RBAC network filters that go before a
// TCP chain's tcp_proxy, nil when no policy applies.
func (s *scope) networkRBACFilters(statPrefix string) []*listenerv3.Filter {
	sets := s.rbacSets(true)
	var out []*listenerv3.Filter
	for _, f := range rbacOrder {
		if set := sets[f.action]; f.netwk != "" && keep(f.action, set) {
			out = append(out, &listenerv3.Filter{Name: NetworkRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(&netrbacv3.RBAC{Rules: set, StatPrefix: f.netwk + "." + statPrefix})}})
		}
	}
	return out
}

// tcpRule is a rule as Istio applies it to TCP traffic: HTTP-only fields
// (hosts, methods, paths, requestPrincipals, request.* conditions and
// their not* forms) cannot match a connection, so an ALLOW rule with one
// is left out (nil) and a DENY rule drops them, matching more.
func tcpRule(rule *security.Rule, broad bool) *security.Rule {
	httpOnly := false
	for _, to := range rule.GetTo() {
		o := to.GetOperation()
		if len(o.GetHosts())+len(o.GetNotHosts())+len(o.GetMethods())+len(o.GetNotMethods())+len(o.GetPaths())+len(o.GetNotPaths()) > 0 {
			httpOnly = true
		}
	}
	for _, f := range rule.GetFrom() {
		if len(f.GetSource().GetRequestPrincipals())+len(f.GetSource().GetNotRequestPrincipals()) > 0 {
			httpOnly = true
		}
	}
	for _, w := range rule.GetWhen() {
		if strings.HasPrefix(w.GetKey(), "request.") {
			httpOnly = true
		}
	}
	if !httpOnly {
		return rule
	}
	if !broad {
		return nil
	}
	r := proto.Clone(rule).(*security.Rule)
	for _, to := range r.GetTo() {
		if o := to.GetOperation(); o != nil {
			o.Hosts, o.NotHosts, o.Methods, o.NotMethods, o.Paths, o.NotPaths = nil, nil, nil, nil, nil, nil
		}
	}
	for _, f := range r.GetFrom() {
		if src := f.GetSource(); src != nil {
			src.RequestPrincipals, src.NotRequestPrincipals = nil, nil
		}
	}
	var when []*security.Condition
	for _, w := range r.GetWhen() {
		if !strings.HasPrefix(w.GetKey(), "request.") {
			when = append(when, w)
		}
	}
	r.When = when
	return r
}

// rbacPolicy translates one rule: it matches when one of its from entries
// (a principal), one of its to entries (a permission) and every when
// condition match. Conditions trellis-proxy cannot evaluate (experimental
// keys) fail closed: an ALLOW rule using one is left out (it allows
// nothing), a DENY or AUDIT rule (broad) drops them and so matches more.
func (s *scope) rbacPolicy(rule *security.Rule, broad bool) *rbacconfigv3.Policy {
	var permConds []*rbacconfigv3.Permission
	var prinConds []*rbacconfigv3.Principal
	for _, w := range rule.GetWhen() {
		perm, prin, ok := condition(w)
		if !ok {
			if broad {
				continue
			}
			return nil
		}
		if perm != nil {
			permConds = append(permConds, perm)
		}
		if prin != nil {
			prinConds = append(prinConds, prin)
		}
	}
	p := &rbacconfigv3.Policy{}
	for _, to := range rule.GetTo() {
		perm := operation(to.GetOperation())
		perm = andPermission(append([]*rbacconfigv3.Permission{perm}, permConds...))
		p.Permissions = append(p.Permissions, perm)
	}
	if len(p.Permissions) == 0 {
		p.Permissions = []*rbacconfigv3.Permission{andPermission(append([]*rbacconfigv3.Permission{anyPermission()}, permConds...))}
	}
	for _, from := range rule.GetFrom() {
		prin, ok := source(from.GetSource(), defaultTrustDomain)
		if !ok {
			if broad {
				prin = anyPrincipal()
			} else {
				continue
			}
		}
		p.Principals = append(p.Principals, andPrincipal(append([]*rbacconfigv3.Principal{prin}, prinConds...)))
	}
	if len(rule.GetFrom()) > 0 && len(p.Principals) == 0 {
		return nil
	}
	if len(p.Principals) == 0 {
		p.Principals = []*rbacconfigv3.Principal{andPrincipal(append([]*rbacconfigv3.Principal{anyPrincipal()}, prinConds...))}
	}
	return p
}

func anyPermission() *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: true}}
}

func anyPrincipal() *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Any{Any: true}}
}

func andPermission(ps []*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func orPermission(ps []*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func notPermission(p *rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_NotRule{NotRule: p}}
}

func andPrincipal(ps []*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_AndIds{AndIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}

func orPrincipal(ps []*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_OrIds{OrIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}

func notPrincipal(p *rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_NotId{NotId: p}}
}

// istioString is Istio's value matching: "*" any non-empty value,
// "prefix*", "*suffix", else exact.
func istioString(v string, ignoreCase bool) *matcherv3.StringMatcher {
	m := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch {
	case v == "*":
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}
	case strings.HasSuffix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(v, "*")}
	case strings.HasPrefix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}
	default:
		m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v}
	}
	return m
}

func headerPermission(name string, m *matcherv3.StringMatcher) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}}}
}

// permissionList ORs one permission per value; negated wraps it in a
// not_rule.
func permissionList(values []string, negated bool, one func(string) *rbacconfigv3.Permission) *rbacconfigv3.Permission {
	var ps []*rbacconfigv3.Permission
	for _, v := range values {
		ps = append(ps, one(v))
	}
	p := orPermission(ps)
	if negated {
		return notPermission(p)
	}
	return p
}

// operation translates a to.operation: every set field must match.
func operation(o *security.Operation) *rbacconfigv3.Permission {
	host := func(v string) *rbacconfigv3.Permission { return headerPermission(":authority", istioString(v, true)) }
	method := func(v string) *rbacconfigv3.Permission {
		return headerPermission(":method", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}})
	}
	path := func(v string) *rbacconfigv3.Permission {
		m := istioString(v, false)
		if v == "*" {
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: ""}}
		}
		return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
	}
	port := func(v string) *rbacconfigv3.Permission {
		n, _ := strconv.ParseUint(v, 10, 32) // validation checked it
		return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
	}
	var and []*rbacconfigv3.Permission
	for _, f := range []struct {
		values  []string
		negated bool
		one     func(string) *rbacconfigv3.Permission
	}{
		{o.GetHosts(), false, host}, {o.GetNotHosts(), true, host},
		{o.GetPorts(), false, port}, {o.GetNotPorts(), true, port},
		{o.GetMethods(), false, method}, {o.GetNotMethods(), true, method},
		{o.GetPaths(), false, path}, {o.GetNotPaths(), true, path},
	} {
		if len(f.values) > 0 {
			and = append(and, permissionList(f.values, f.negated, f.one))
		}
	}
	if len(and) == 0 {
		return anyPermission()
	}
	return andPermission(and)
}

func cidr(v string) *corev3.CidrRange {
	addr, bits, ok := strings.Cut(v, "/")
	c := &corev3.CidrRange{AddressPrefix: addr}
	if ok {
		n, _ := strconv.ParseUint(bits, 10, 32) // validation checked it
		c.PrefixLen = wrapperspb.UInt32(uint32(n))
	} else if strings.Contains(addr, ":") {
		c.PrefixLen = wrapperspb.UInt32(128)
	} else {
		c.PrefixLen = wrapperspb.UInt32(32)
	}
	return c
}

func authenticated(m *matcherv3.StringMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: m}}}
}

// principalMatcher matches a SPIFFE identity given as Istio writes it
// (cluster.local/ns/NS/sa/SA, with * wildcards).
func principalMatcher(v string) *matcherv3.StringMatcher {
	if v == "*" {
		return istioString(v, false)
	}
	m := istioString(v, false)
	switch p := m.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		p.Exact = "spiffe://" + p.Exact
	case *matcherv3.StringMatcher_Prefix:
		p.Prefix = "spiffe://" + p.Prefix
	}
	return m
}

// namespaceMatcher matches the identities of a namespace, Istio's
// .*/ns/NS/.* (with * wildcards inside the namespace segment).
func namespaceMatcher(v string) *matcherv3.StringMatcher {
	var re string
	switch {
	case v == "*":
		re = `.*/ns/[^/]+/.*`
	case strings.HasSuffix(v, "*"):
		re = `.*/ns/` + regexp.QuoteMeta(strings.TrimSuffix(v, "*")) + `[^/]*/.*`
	case strings.HasPrefix(v, "*"):
		re = `.*/ns/[^/]*` + regexp.QuoteMeta(strings.TrimPrefix(v, "*")) + `/.*`
	default:
		re = `.*/ns/` + regexp.QuoteMeta(v) + `/.*`
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// principalList ORs one principal per value; negated wraps it in a not_id.
func principalList(values []string, negated bool, one func(string) *rbacconfigv3.Principal) *rbacconfigv3.Principal {
	var ps []*rbacconfigv3.Principal
	for _, v := range values {
		ps = append(ps, one(v))
	}
	p := orPrincipal(ps)
	if negated {
		return notPrincipal(p)
	}
	return p
}

func principalFn(v string) *rbacconfigv3.Principal { return authenticated(principalMatcher(v)) }
func namespaceFn(v string) *rbacconfigv3.Principal { return authenticated(namespaceMatcher(v)) }
func ipFn(v string) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(v)}}
}
func remoteIPFn(v string) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_RemoteIp{RemoteIp: cidr(v)}}
}

// IstioAuthnMetadata is the dynamic metadata filter under which Istio's
// RBAC rules find the JWT authentication outcome (request.auth.* keys);
// trellis-proxy's jwt_authn filter provides it.
const IstioAuthnMetadata = "istio_authn"

// authnMetadata matches the request's JWT metadata at keys (the first a
// request.auth.* attribute, further ones nested claim names) with m; a
// list match matches any element of a list claim.
func authnMetadata(m *matcherv3.StringMatcher, list bool, keys ...string) *rbacconfigv3.Principal {
	var path []*matcherv3.MetadataMatcher_PathSegment
	for _, k := range keys {
		path = append(path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	v := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}
	if list {
		v = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
			MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: v}}}}
	}
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: IstioAuthnMetadata, Path: path, Value: v}}}
}

func requestPrincipalFn(v string) *rbacconfigv3.Principal {
	return authnMetadata(istioString(v, false), false, "request.auth.principal")
}

// claimPath splits request.auth.claims[a][b] into its claim names; ok is
// false when key is not that form.
func claimPath(key string) ([]string, bool) {
	rest, ok := strings.CutPrefix(key, "request.auth.claims")
	if !ok || rest == "" {
		return nil, false
	}
	var names []string
	for rest != "" {
		if rest[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(rest, ']')
		if end <= 1 {
			return nil, false
		}
		names = append(names, rest[1:end])
		rest = rest[end+1:]
	}
	return names, true
}

// source translates a from.source: every set field must match. It
// always succeeds (ok is true); requestPrincipals match the JWT
// metadata's request.auth.principal.
func source(src *security.Source, trustDomain string) (*rbacconfigv3.Principal, bool) {
	sa := func(v string) *rbacconfigv3.Principal {
		ns, name, _ := strings.Cut(v, "/")
		return authenticated(principalMatcher(trustDomain + "/ns/" + ns + "/sa/" + name))
	}
	td := func(v string) *rbacconfigv3.Principal {
		return authenticated(principalMatcher(v + "/*"))
	}
	var and []*rbacconfigv3.Principal
	for _, f := range []struct {
		values  []string
		negated bool
		one     func(string) *rbacconfigv3.Principal
	}{
		{src.GetPrincipals(), false, principalFn}, {src.GetNotPrincipals(), true, principalFn},
		{src.GetRequestPrincipals(), false, requestPrincipalFn}, {src.GetNotRequestPrincipals(), true, requestPrincipalFn},
		{src.GetNamespaces(), false, namespaceFn}, {src.GetNotNamespaces(), true, namespaceFn},
		{src.GetServiceAccounts(), false, sa}, {src.GetNotServiceAccounts(), true, sa},
		{src.GetTrustDomains(), false, td}, {src.GetNotTrustDomains(), true, td},
		{src.GetIpBlocks(), false, ipFn}, {src.GetNotIpBlocks(), true, ipFn},
		{src.GetRemoteIpBlocks(), false, remoteIPFn}, {src.GetNotRemoteIpBlocks(), true, remoteIPFn},
	} {
		if len(f.values) > 0 {
			and = append(and, principalList(f.values, f.negated, f.one))
		}
	}
	if len(and) == 0 {
		return anyPrincipal(), true
	}
	return andPrincipal(and), true
}

// condition translates a when condition into a permission or a principal
// (Istio puts request and source attributes on the principal side,
// destination and connection ones on the permission side). ok is false
// for experimental keys and malformed claim keys.
func condition(c *security.Condition) (*rbacconfigv3.Permission, *rbacconfigv3.Principal, bool) {
	key := c.GetKey()
	var perm func(string) *rbacconfigv3.Permission
	var prin func(string) *rbacconfigv3.Principal
	switch {
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(key, "request.headers["), "]"))
		prin = func(v string) *rbacconfigv3.Principal {
			return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Header{Header: &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: istioString(v, false)}}}}
		}
	case key == "request.auth.principal":
		prin = requestPrincipalFn
	case key == "request.auth.audiences":
		prin = func(v string) *rbacconfigv3.Principal {
			return authnMetadata(istioString(v, false), true, "request.auth.audiences")
		}
	case key == "request.auth.presenter":
		prin = func(v string) *rbacconfigv3.Principal {
			return authnMetadata(istioString(v, false), false, "request.auth.presenter")
		}
	case strings.HasPrefix(key, "request.auth.claims["):
		names, ok := claimPath(key)
		if !ok {
			return nil, nil, false
		}
		prin = func(v string) *rbacconfigv3.Principal {
			return authnMetadata(istioString(v, false), true, append([]string{"request.auth.claims"}, names...)...)
		}
	case key == "source.ip":
		prin = ipFn
	case key == "remote.ip":
		prin = remoteIPFn
	case key == "source.namespace":
		prin = namespaceFn
	case key == "source.principal":
		prin = principalFn
	case key == "destination.ip":
		perm = func(v string) *rbacconfigv3.Permission {
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationIp{DestinationIp: cidr(v)}}
		}
	case key == "destination.port":
		perm = func(v string) *rbacconfigv3.Permission {
			n, _ := strconv.ParseUint(v, 10, 32)
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
		}
	case key == "connection.sni":
		perm = func(v string) *rbacconfigv3.Permission {
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_RequestedServerName{RequestedServerName: istioString(v, false)}}
		}
	default:
		return nil, nil, false
	}
	if perm != nil {
		var and []*rbacconfigv3.Permission
		if len(c.GetValues()) > 0 {
			and = append(and, permissionList(c.GetValues(), false, perm))
		}
		if len(c.GetNotValues()) > 0 {
			and = append(and, permissionList(c.GetNotValues(), true, perm))
		}
		return andPermission(and), nil, true
	}
	var and []*rbacconfigv3.Principal
	if len(c.GetValues()) > 0 {
		and = append(and, principalList(c.GetValues(), false, prin))
	}
	if len(c.GetNotValues()) > 0 {
		and = append(and, principalList(c.GetNotValues(), true, prin))
	}
	return nil, andPrincipal(and), true
}
