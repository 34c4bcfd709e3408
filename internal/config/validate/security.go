package validate

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func (c *checker) selector(p Path, ws *typev1beta1.WorkloadSelector) {
	if ws == nil {
		return
	}
	if len(ws.GetMatchLabels()) == 0 {
		c.warnf(p.Field("matchLabels"), "empty, so the policy applies to every workload in the namespace; remove the selector to say so")
	}
	c.checkLabels(p.Field("matchLabels"), ws.GetMatchLabels())
}

func (c *checker) targetRefs(p Path, sel *typev1beta1.WorkloadSelector, one *typev1beta1.PolicyTargetReference, many []*typev1beta1.PolicyTargetReference) {
	if sel != nil && (one != nil || len(many) > 0) {
		c.errorf(p.Field("selector"), "selector and targetRef(s) are exclusive; use only one")
	}
	if one != nil && len(many) > 0 {
		c.errorf(p.Field("targetRef"), "targetRef and targetRefs are exclusive; use targetRefs")
	}
	refs := many
	rp := p.Field("targetRefs")
	if one != nil {
		refs, rp = []*typev1beta1.PolicyTargetReference{one}, p.Field("targetRef")
	}
	for i, r := range refs {
		ip := rp
		if one == nil {
			ip = rp.Index(i)
		}
		if r.GetKind() == "" {
			c.errorf(ip.Field("kind"), "missing; want Gateway, Service or ServiceEntry")
		}
		if r.GetName() == "" {
			c.errorf(ip.Field("name"), "missing; name the target")
		}
		if r.GetNamespace() != "" && r.GetNamespace() != c.r.Namespace {
			c.errorf(ip.Field("namespace"), "%q differs from the policy's namespace %q; cross-namespace targets are not allowed", r.GetNamespace(), c.r.Namespace)
		}
	}
}

func (c *checker) peerAuthentication(pa *security.PeerAuthentication) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), pa.GetSelector())
	if len(pa.GetPortLevelMtls()) > 0 && pa.GetSelector() == nil {
		c.errorf(spec.Field("portLevelMtls"), "needs a selector; port-level mTLS applies to selected workloads only")
	}
	ports := make([]int, 0, len(pa.GetPortLevelMtls()))
	for p := range pa.GetPortLevelMtls() {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	for _, port := range ports {
		pp := spec.Field("portLevelMtls").Key(strconv.Itoa(port))
		c.checkPort(pp, uint32(port))
		if pa.GetPortLevelMtls()[uint32(port)] == nil {
			c.errorf(pp, "empty; set mode")
		}
	}
}

// conditionKeys are the attribute keys AuthorizationPolicy `when` accepts;
// keys ending in "[" take a name in brackets.
var conditionKeys = []string{
	"request.headers[", "source.ip", "remote.ip", "source.namespace", "source.principal",
	"request.auth.principal", "request.auth.audiences", "request.auth.presenter", "request.auth.claims[",
	"destination.ip", "destination.port", "connection.sni", "experimental.envoy.filters.",
}

func (c *checker) authorizationPolicy(ap *security.AuthorizationPolicy) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), ap.GetSelector())
	c.targetRefs(spec, ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs())
	custom := ap.GetAction() == security.AuthorizationPolicy_CUSTOM
	if custom && ap.GetProvider().GetName() == "" {
		c.errorf(spec.Field("provider").Field("name"), "missing; action CUSTOM needs provider.name (an extension provider in the mesh config)")
	}
	if !custom && ap.GetProvider() != nil {
		c.errorf(spec.Field("provider"), "only allowed with action CUSTOM")
	}
	for i, r := range ap.GetRules() {
		p := spec.Field("rules").Index(i)
		if r == nil {
			continue
		}
		for j, f := range r.GetFrom() {
			fp := p.Field("from").Index(j)
			s := f.GetSource()
			if s == nil {
				c.errorf(fp.Field("source"), "missing; a from entry needs a source")
				continue
			}
			sp := fp.Field("source")
			lists := map[string][]string{
				"principals": s.GetPrincipals(), "notPrincipals": s.GetNotPrincipals(),
				"requestPrincipals": s.GetRequestPrincipals(), "notRequestPrincipals": s.GetNotRequestPrincipals(),
				"namespaces": s.GetNamespaces(), "notNamespaces": s.GetNotNamespaces(),
				"serviceAccounts": s.GetServiceAccounts(), "notServiceAccounts": s.GetNotServiceAccounts(),
				"ipBlocks": s.GetIpBlocks(), "notIpBlocks": s.GetNotIpBlocks(),
				"remoteIpBlocks": s.GetRemoteIpBlocks(), "notRemoteIpBlocks": s.GetNotRemoteIpBlocks(),
			}
			if c.checkNonEmptyLists(sp, lists) == 0 {
				c.errorf(sp, "empty source; set at least one of principals, namespaces, ipBlocks, requestPrincipals or their not* forms")
			}
			for _, k := range []string{"ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"} {
				for x, b := range lists[k] {
					c.checkIPOrCIDR(sp.Field(k).Index(x), b)
				}
			}
			if (len(s.GetServiceAccounts()) > 0 || len(s.GetNotServiceAccounts()) > 0) && (len(s.GetPrincipals()) > 0 || len(s.GetNotPrincipals()) > 0) {
				c.errorf(sp.Field("serviceAccounts"), "cannot be combined with principals; use one")
			}
		}
		for j, t := range r.GetTo() {
			tp := p.Field("to").Index(j)
			o := t.GetOperation()
			if o == nil {
				c.errorf(tp.Field("operation"), "missing; a to entry needs an operation")
				continue
			}
			op := tp.Field("operation")
			lists := map[string][]string{
				"hosts": o.GetHosts(), "notHosts": o.GetNotHosts(), "ports": o.GetPorts(), "notPorts": o.GetNotPorts(),
				"methods": o.GetMethods(), "notMethods": o.GetNotMethods(), "paths": o.GetPaths(), "notPaths": o.GetNotPaths(),
			}
			if c.checkNonEmptyLists(op, lists) == 0 {
				c.errorf(op, "empty operation; set at least one of hosts, ports, methods, paths or their not* forms")
			}
			for _, k := range []string{"ports", "notPorts"} {
				for x, port := range lists[k] {
					if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
						c.errorf(op.Field(k).Index(x), "%q is not a port number (1-65535)", port)
					}
				}
			}
		}
		for j, w := range r.GetWhen() {
			wp := p.Field("when").Index(j)
			c.checkConditionKey(wp.Field("key"), w.GetKey())
			if len(w.GetValues()) == 0 && len(w.GetNotValues()) == 0 {
				c.errorf(wp, "needs values or notValues")
			}
			if strings.HasSuffix(w.GetKey(), ".ip") {
				for x, v := range w.GetValues() {
					c.checkIPOrCIDR(wp.Field("values").Index(x), v)
				}
				for x, v := range w.GetNotValues() {
					c.checkIPOrCIDR(wp.Field("notValues").Index(x), v)
				}
			}
			if w.GetKey() == "destination.port" {
				for x, v := range append(append([]string{}, w.GetValues()...), w.GetNotValues()...) {
					if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
						c.errorf(wp.Field("values").Index(x), "%q is not a port number (1-65535)", v)
					}
				}
			}
		}
	}
}

// checkNonEmptyLists reports empty strings in the lists and returns how
// many lists are set.
func (c *checker) checkNonEmptyLists(p Path, lists map[string][]string) int {
	set := 0
	for _, k := range sortedKeys(lists) {
		if len(lists[k]) > 0 {
			set++
		}
		for i, v := range lists[k] {
			if v == "" {
				c.errorf(p.Field(k).Index(i), "empty value")
			}
		}
	}
	return set
}

func (c *checker) checkConditionKey(p Path, key string) {
	if key == "" {
		c.errorf(p, "missing; name the attribute, such as request.headers[x-token] or source.ip")
		return
	}
	for _, k := range conditionKeys {
		if strings.HasSuffix(k, "[") {
			if strings.HasPrefix(key, k) && strings.HasSuffix(key, "]") && len(key) > len(k)+1 {
				return
			}
			continue
		}
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return
		}
	}
	c.errorf(p, "unknown attribute %q; want one of request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], destination.ip, destination.port, connection.sni", key)
}

func (c *checker) requestAuthentication(ra *security.RequestAuthentication) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), ra.GetSelector())
	c.targetRefs(spec, ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs())
	for i, r := range ra.GetJwtRules() {
		p := spec.Field("jwtRules").Index(i)
		if r.GetIssuer() == "" {
			c.errorf(p.Field("issuer"), "missing; name the token issuer")
		}
		if u := r.GetJwksUri(); u != "" {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				c.errorf(p.Field("jwksUri"), "%q is not an http(s) URL", u)
			}
		}
		if r.GetJwks() != "" && r.GetJwksUri() != "" {
			c.warnf(p.Field("jwks"), "both jwks and jwksUri are set; jwks is used")
		}
		for j, h := range r.GetFromHeaders() {
			if h.GetName() == "" {
				c.errorf(p.Field("fromHeaders").Index(j).Field("name"), "missing; name the header carrying the token")
			}
		}
		for j, h := range r.GetOutputClaimToHeaders() {
			hp := p.Field("outputClaimToHeaders").Index(j)
			if h.GetHeader() == "" {
				c.errorf(hp.Field("header"), "missing; name the header to write")
			} else {
				c.checkHeaderName(hp.Field("header"), h.GetHeader())
			}
			if h.GetClaim() == "" {
				c.errorf(hp.Field("claim"), "missing; name the claim to copy")
			}
		}
		c.checkDuration(p.Field("timeout"), r.GetTimeout())
	}
}
