package filter

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// rbac is envoy.filters.http.rbac: its typed_config applies to every
// route; a route's RBACPerRoute replaces it (an RBACPerRoute without rbac
// turns the filter off for the route, as in Envoy).
var rbac = withRoute(newBuilder(wellknown.HTTPRoleBasedAccessControl, compileRBACFilter), compileRBACRoute)

// RBACAction is an RBAC rule set's action.
type RBACAction uint8

const (
	// RBACAllow lets a request through only when a policy matches.
	RBACAllow RBACAction = iota
	// RBACDeny refuses a request when a policy matches.
	RBACDeny
	// RBACLog lets every request through and records the policy that
	// matched (Istio's AUDIT).
	RBACLog
)

// RBACPolicy is one compiled named policy: it matches when any permission
// and any principal match.
type RBACPolicy struct {
	Name string
	// Details is Envoy's response code details of a denial this policy
	// decides: rbac_access_denied_matched_policy[NAME].
	Details     string
	permissions []rbacNode
	principals  []rbacNode
}

// RBACRules is a compiled envoy.config.rbac.v3.RBAC.
type RBACRules struct {
	Action RBACAction
	// Policies are in name order, the order Envoy evaluates them in.
	Policies []RBACPolicy
}

// noPolicy is the details of an ALLOW denial no policy decided.
const noPolicy = "rbac_access_denied_matched_policy[none]"

// RBAC is a compiled RBAC filter config: the enforced rules (nil: none)
// and the shadow rules, evaluated and logged only.
type RBAC struct {
	Rules, Shadow *RBACRules
}

// rbacNode is one compiled permission or principal.
type rbacNode struct {
	kind     byte // see the rbac* kinds
	children []rbacNode
	header   HeaderMatcher
	str      StringMatcher
	prefix   netip.Prefix
	lo, hi   uint32
	matchAll bool // authenticated without principal_name
	meta     *metaMatch
}

const (
	rbacAny byte = iota
	rbacAnd
	rbacOr
	rbacNot
	rbacHeader
	rbacPath
	rbacDstIP
	rbacDstPort
	rbacSNI
	rbacAuthenticated
	rbacDirectRemoteIP
	rbacRemoteIP
	rbacMetadata
)

func compileRBACFilter(c *rbacv3.RBAC, path string) (Filter, error) {
	r, err := CompileRBAC(c, path)
	if err != nil {
		return nil, err
	}
	return rbacFilter{def: r}, nil
}

func compileRBACRoute(c *rbacv3.RBACPerRoute, path string) (any, error) {
	if c.GetRbac() == nil {
		return &RBAC{}, nil
	}
	return CompileRBAC(c.GetRbac(), path+".rbac")
}

// CompileRBAC compiles the HTTP RBAC filter's config; path names the field
// in errors.
func CompileRBAC(c *rbacv3.RBAC, path string) (*RBAC, error) {
	switch {
	case c.GetMatcher() != nil || c.GetShadowMatcher() != nil:
		return nil, fmt.Errorf("%s: matcher and shadow_matcher are not supported by trellis-proxy; use rules and shadow_rules", path)
	}
	out := &RBAC{}
	var err error
	if c.GetRules() != nil {
		if out.Rules, err = CompileRBACRules(c.GetRules(), path+".rules"); err != nil {
			return nil, err
		}
	}
	if c.GetShadowRules() != nil {
		if out.Shadow, err = CompileRBACRules(c.GetShadowRules(), path+".shadow_rules"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CompileRBACRules compiles an envoy.config.rbac.v3.RBAC rule set.
func CompileRBACRules(r *rbacconfigv3.RBAC, path string) (*RBACRules, error) {
	out := &RBACRules{}
	switch r.GetAction() {
	case rbacconfigv3.RBAC_ALLOW:
		out.Action = RBACAllow
	case rbacconfigv3.RBAC_DENY:
		out.Action = RBACDeny
	case rbacconfigv3.RBAC_LOG:
		out.Action = RBACLog
	default:
		return nil, fmt.Errorf("%s.action: %v is not supported; use ALLOW, DENY or LOG", path, r.GetAction())
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for n := range r.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.GetPolicies()[n]
		ppath := fmt.Sprintf("%s.policies[%q]", path, n)
		if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
			return nil, fmt.Errorf("%s.condition: CEL conditions are not supported by trellis-proxy", ppath)
		}
		if len(p.GetPermissions()) == 0 {
			return nil, fmt.Errorf("%s.permissions: must not be empty", ppath)
		}
		if len(p.GetPrincipals()) == 0 {
			return nil, fmt.Errorf("%s.principals: must not be empty", ppath)
		}
		cp := RBACPolicy{Name: n, Details: "rbac_access_denied_matched_policy[" + n + "]"}
		for i, perm := range p.GetPermissions() {
			node, err := compilePermission(perm, fmt.Sprintf("%s.permissions[%d]", ppath, i))
			if err != nil {
				return nil, err
			}
			cp.permissions = append(cp.permissions, node)
		}
		for i, pr := range p.GetPrincipals() {
			node, err := compilePrincipal(pr, fmt.Sprintf("%s.principals[%d]", ppath, i))
			if err != nil {
				return nil, err
			}
			cp.principals = append(cp.principals, node)
		}
		out.Policies = append(out.Policies, cp)
	}
	return out, nil
}

func compileCidr(c *corev3.CidrRange, path string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s.address_prefix: %q is not an IP address", path, c.GetAddressPrefix())
	}
	a = a.Unmap()
	bits := a.BitLen()
	if c.GetPrefixLen() != nil {
		bits = int(c.GetPrefixLen().GetValue())
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s.prefix_len: %d is too long for %s", path, bits, a)
	}
	return p, nil
}

func compilePermission(p *rbacconfigv3.Permission, path string) (rbacNode, error) {
	var n rbacNode
	var err error
	switch r := p.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		if !r.Any {
			return n, fmt.Errorf("%s.any: must be true", path)
		}
		n.kind = rbacAny
	case *rbacconfigv3.Permission_AndRules:
		n.kind = rbacAnd
		for i, c := range r.AndRules.GetRules() {
			cn, err := compilePermission(c, fmt.Sprintf("%s.and_rules.rules[%d]", path, i))
			if err != nil {
				return n, err
			}
			n.children = append(n.children, cn)
		}
	case *rbacconfigv3.Permission_OrRules:
		n.kind = rbacOr
		for i, c := range r.OrRules.GetRules() {
			cn, err := compilePermission(c, fmt.Sprintf("%s.or_rules.rules[%d]", path, i))
			if err != nil {
				return n, err
			}
			n.children = append(n.children, cn)
		}
	case *rbacconfigv3.Permission_NotRule:
		n.kind = rbacNot
		cn, err := compilePermission(r.NotRule, path+".not_rule")
		if err != nil {
			return n, err
		}
		n.children = []rbacNode{cn}
	case *rbacconfigv3.Permission_Header:
		n.kind = rbacHeader
		n.header, err = CompileHeaderMatcher(r.Header, path+".header")
	case *rbacconfigv3.Permission_UrlPath:
		n.kind = rbacPath
		if r.UrlPath.GetPath() == nil {
			return n, fmt.Errorf("%s.url_path.path: must be set", path)
		}
		n.str, err = CompileStringMatcher(r.UrlPath.GetPath(), path+".url_path.path")
	case *rbacconfigv3.Permission_DestinationIp:
		n.kind = rbacDstIP
		n.prefix, err = compileCidr(r.DestinationIp, path+".destination_ip")
	case *rbacconfigv3.Permission_DestinationPort:
		n.kind, n.lo, n.hi = rbacDstPort, r.DestinationPort, r.DestinationPort+1
	case *rbacconfigv3.Permission_DestinationPortRange:
		n.kind, n.lo, n.hi = rbacDstPort, uint32(r.DestinationPortRange.GetStart()), uint32(r.DestinationPortRange.GetEnd())
	case *rbacconfigv3.Permission_RequestedServerName:
		n.kind = rbacSNI
		n.str, err = CompileStringMatcher(r.RequestedServerName, path+".requested_server_name")
	case nil:
		return n, fmt.Errorf("%s: a permission rule must be set", path)
	default:
		return n, fmt.Errorf("%s: permission %T is not supported by trellis-proxy; use and_rules, or_rules, not_rule, any, header, url_path, destination_ip, destination_port, destination_port_range or requested_server_name", path, r)
	}
	return n, err
}

func compilePrincipal(p *rbacconfigv3.Principal, path string) (rbacNode, error) {
	var n rbacNode
	var err error
	switch id := p.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		if !id.Any {
			return n, fmt.Errorf("%s.any: must be true", path)
		}
		n.kind = rbacAny
	case *rbacconfigv3.Principal_AndIds:
		n.kind = rbacAnd
		for i, c := range id.AndIds.GetIds() {
			cn, err := compilePrincipal(c, fmt.Sprintf("%s.and_ids.ids[%d]", path, i))
			if err != nil {
				return n, err
			}
			n.children = append(n.children, cn)
		}
	case *rbacconfigv3.Principal_OrIds:
		n.kind = rbacOr
		for i, c := range id.OrIds.GetIds() {
			cn, err := compilePrincipal(c, fmt.Sprintf("%s.or_ids.ids[%d]", path, i))
			if err != nil {
				return n, err
			}
			n.children = append(n.children, cn)
		}
	case *rbacconfigv3.Principal_NotId:
		n.kind = rbacNot
		cn, err := compilePrincipal(id.NotId, path+".not_id")
		if err != nil {
			return n, err
		}
		n.children = []rbacNode{cn}
	case *rbacconfigv3.Principal_Authenticated_:
		n.kind = rbacAuthenticated
		if m := id.Authenticated.GetPrincipalName(); m != nil {
			n.str, err = CompileStringMatcher(m, path+".authenticated.principal_name")
		} else {
			n.matchAll = true
		}
	case *rbacconfigv3.Principal_SourceIp:
		n.kind = rbacDirectRemoteIP
		n.prefix, err = compileCidr(id.SourceIp, path+".source_ip")
	case *rbacconfigv3.Principal_DirectRemoteIp:
		n.kind = rbacDirectRemoteIP
		n.prefix, err = compileCidr(id.DirectRemoteIp, path+".direct_remote_ip")
	case *rbacconfigv3.Principal_RemoteIp:
		n.kind = rbacRemoteIP
		n.prefix, err = compileCidr(id.RemoteIp, path+".remote_ip")
	case *rbacconfigv3.Principal_Header:
		n.kind = rbacHeader
		n.header, err = CompileHeaderMatcher(id.Header, path+".header")
	case *rbacconfigv3.Principal_UrlPath:
		n.kind = rbacPath
		if id.UrlPath.GetPath() == nil {
			return n, fmt.Errorf("%s.url_path.path: must be set", path)
		}
		n.str, err = CompileStringMatcher(id.UrlPath.GetPath(), path+".url_path.path")
	case *rbacconfigv3.Principal_Metadata:
		n.kind = rbacMetadata
		n.meta, err = compileMetadata(id.Metadata, path+".metadata")
	case nil:
		return n, fmt.Errorf("%s: a principal identifier must be set", path)
	default:
		return n, fmt.Errorf("%s: principal %T is not supported by trellis-proxy; use and_ids, or_ids, not_id, any, authenticated, direct_remote_ip, remote_ip, source_ip, header or url_path", path, id)
	}
	return n, err
}

// pathOnly is the request path without its query, what url_path matches.
func pathOnly(p []byte) []byte {
	for i, c := range p {
		if c == '?' || c == '#' {
			return p[:i]
		}
	}
	return p
}

// match evaluates the node; http is false for a connection, where
// header and path rules never match (as in Envoy's network filter).
func (n *rbacNode) match(s Stream, http bool) bool {
	switch n.kind {
	case rbacAny:
		return true
	case rbacAnd:
		for i := range n.children {
			if !n.children[i].match(s, http) {
				return false
			}
		}
		return true
	case rbacOr:
		for i := range n.children {
			if n.children[i].match(s, http) {
				return true
			}
		}
		return false
	case rbacNot:
		return !n.children[0].match(s, http)
	case rbacHeader:
		if !http {
			return false
		}
		v, ok := RequestHeader(s, n.header.Name)
		return n.header.Match(v, ok)
	case rbacPath:
		return http && n.str.Match(pathOnly(s.Path()))
	case rbacDstIP:
		return n.prefix.Contains(s.Conn().Local.Addr().Unmap())
	case rbacDstPort:
		p := uint32(s.Conn().Local.Port())
		return p >= n.lo && p < n.hi
	case rbacSNI:
		return n.str.MatchString(s.Conn().SNI)
	case rbacAuthenticated:
		c := s.Conn()
		if !c.PeerCertificate {
			return false
		}
		return n.matchAll || n.str.MatchString(c.PeerPrincipal)
	case rbacDirectRemoteIP:
		return n.prefix.Contains(s.Conn().Remote.Addr().Unmap())
	case rbacRemoteIP:
		return n.prefix.Contains(s.RemoteIP().Unmap())
	case rbacMetadata:
		return http && n.meta.match(s.Authn())
	}
	return false
}

// RequestHeader returns a request header by lower-case name, the
// pseudo-headers :method, :path and :authority included.
func RequestHeader(s Stream, name string) ([]byte, bool) {
	switch name {
	case ":method":
		return s.Method(), true
	case ":path":
		return s.Path(), true
	case ":authority":
		return s.Header("host")
	}
	return s.Header(name)
}

// Evaluate returns whether the rules let the request through and the
// policy that decided (nil when none matched).
func (r *RBACRules) Evaluate(s Stream) (allowed bool, decided *RBACPolicy) {
	return r.evaluate(s, true)
}

func (r *RBACRules) evaluate(s Stream, http bool) (allowed bool, decided *RBACPolicy) {
	for i := range r.Policies {
		p := &r.Policies[i]
		if p.matches(s, http) {
			return r.Action != RBACDeny, p
		}
	}
	return r.Action != RBACAllow, nil
}

func (p *RBACPolicy) matches(s Stream, http bool) bool {
	ok := false
	for i := range p.permissions {
		if p.permissions[i].match(s, http) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range p.principals {
		if p.principals[i].match(s, http) {
			return true
		}
	}
	return false
}

type rbacFilter struct{ def *RBAC }

// Decode evaluates the shadow rules (logged only), then the enforced
// rules: a request they do not let through gets 403 "RBAC: access denied"
// naming the deciding policy in its response code details.
func (f rbacFilter) Decode(s Stream, perRoute any) Status {
	v := f.rules(perRoute).verdict(s)
	if v.HasShadow {
		s.LogRBAC(true, v.Shadow.Allowed, v.Shadow.Policy)
	}
	switch {
	case !v.Enforced:
		return Continue
	case v.Action == RBACLog:
		if v.Policy != nil {
			s.LogRBAC(false, true, v.Policy)
		}
		return Continue
	case v.Allowed:
		return Continue
	}
	s.Deny(v.Details())
	return Stop
}

// CompileNetworkRBAC compiles envoy.filters.network.rbac's config into
// the rules a connection is checked against once, before the terminal
// filter (Envoy's ONE_TIME_ON_FIRST_BYTE); nil rules check nothing.
func CompileNetworkRBAC(c *netrbacv3.RBAC, path string) (*RBACRules, error) {
	switch {
	case c.GetMatcher() != nil || c.GetShadowMatcher() != nil:
		return nil, fmt.Errorf("%s: matcher and shadow_matcher are not supported by trellis-proxy; use rules", path)
	case c.GetShadowRules() != nil:
		return nil, fmt.Errorf("%s.shadow_rules: not supported by trellis-proxy's network RBAC filter", path)
	case c.GetEnforcementType() != netrbacv3.RBAC_ONE_TIME_ON_FIRST_BYTE:
		return nil, fmt.Errorf("%s.enforcement_type: only ONE_TIME_ON_FIRST_BYTE is supported", path)
	case c.GetDelayDeny() != nil:
		return nil, fmt.Errorf("%s.delay_deny: not supported", path)
	}
	if c.GetRules() == nil {
		return nil, nil
	}
	return CompileRBACRules(c.GetRules(), path+".rules")
}

// connStream is a connection as the network RBAC filter sees it: no
// request, so header and path rules never match.
type connStream struct{ c *Conn }

func (s connStream) Header(string) ([]byte, bool)    { return nil, false }
func (s connStream) Method() []byte                  { return nil }
func (s connStream) Forwarding() bool                { return false }
func (s connStream) Rand() uint64                    { return 0 }
func (s connStream) Delay(time.Duration)             {}
func (s connStream) Abort(int, int, string)          {}
func (s connStream) Reply(int)                       {}
func (s connStream) SetResponseHeader(_, _ []byte)   {}
func (s connStream) Forward()                        {}
func (s connStream) Path() []byte                    { return nil }
func (s connStream) Conn() *Conn                     { return s.c }
func (s connStream) RemoteIP() netip.Addr            { return s.c.Remote.Addr() }
func (s connStream) Deny(string)                     {}
func (s connStream) LogRBAC(bool, bool, *RBACPolicy) {}
func (s connStream) Authn() *Authn                   { return nil }
func (s connStream) SetRequestHeader(string, []byte) {}
func (s connStream) DelRequestHeader(string)         {}
func (s connStream) Unauthorized(_, _ string)        {}

// EvaluateConn checks a connection: whether the rules let it through and
// the policy that decided (nil when none matched).
func (r *RBACRules) EvaluateConn(c *Conn) (allowed bool, decided *RBACPolicy) {
	return r.evaluate(connStream{c}, false)
}
