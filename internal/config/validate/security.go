package validate

import (
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
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
		} else if !targetKinds[targetKind{r.GetGroup(), r.GetKind()}] {
			c.errorf(ip.Field("kind"), "%q in group %q cannot be a target; want Service (group \"\"), ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io)", r.GetKind(), r.GetGroup())
		}
		if r.GetName() == "" {
			c.errorf(ip.Field("name"), "missing; name the target")
		}
		if r.GetNamespace() != "" {
			c.errorf(ip.Field("namespace"), "must not be set: a policy targets resources in its own namespace only")
		}
	}
}

type targetKind struct{ group, kind string }

// targetKinds are what targetRef(s) may point at.
var targetKinds = map[targetKind]bool{
	{"", "Service"}:                               true,
	{"core", "Service"}:                           true,
	{"networking.istio.io", "ServiceEntry"}:       true,
	{"gateway.networking.k8s.io", "Gateway"}:      true,
	{"gateway.networking.k8s.io", "GatewayClass"}: true,
}

func (c *checker) peerAuthentication(pa *security.PeerAuthentication) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), pa.GetSelector())
	if len(pa.GetPortLevelMtls()) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		c.errorf(spec.Field("portLevelMtls"), "needs a selector with matchLabels; port-level mTLS applies to selected workloads only, not to a whole namespace or mesh")
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
	"source.serviceAccount", "source.trustDomain",
	"request.auth.principal", "request.auth.audiences", "request.auth.presenter", "request.auth.claims[",
	"destination.ip", "destination.port", "connection.sni", "experimental.envoy.filters.",
}

func (c *checker) authorizationPolicy(ap *security.AuthorizationPolicy) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), ap.GetSelector())
	c.targetRefs(spec, ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs())
	custom := ap.GetAction() == security.AuthorizationPolicy_CUSTOM
	if custom {
		c.errorf(spec.Field("action"), "CUSTOM is not supported by Trellis yet (no external authorization filter), and a policy is never ignored; use ALLOW or DENY rules")
	}
	if custom && ap.GetProvider().GetName() == "" {
		c.errorf(spec.Field("provider").Field("name"), "missing; action CUSTOM needs provider.name (an extension provider in the mesh config)")
	}
	if !custom && ap.GetProvider() != nil {
		c.errorf(spec.Field("provider"), "only allowed with action CUSTOM")
	}
	if ap.GetRules() == nil {
		switch ap.GetAction() {
		case security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_CUSTOM:
			c.errorf(spec.Field("rules"), "missing; action %s without rules never applies; add an empty rule (rules: [{}]) to apply it to every request", ap.GetAction())
		}
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
				"trustDomains": s.GetTrustDomains(), "notTrustDomains": s.GetNotTrustDomains(),
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
			if (len(s.GetServiceAccounts()) > 0 || len(s.GetNotServiceAccounts()) > 0) &&
				(len(s.GetPrincipals()) > 0 || len(s.GetNotPrincipals()) > 0 || len(s.GetNamespaces()) > 0 || len(s.GetNotNamespaces()) > 0) {
				c.errorf(sp.Field("serviceAccounts"), "cannot be combined with principals or namespaces; a service account already names both, use one")
			}
			for _, k := range []string{"serviceAccounts", "notServiceAccounts"} {
				c.checkServiceAccounts(sp.Field(k), lists[k])
			}
			for _, k := range []struct {
				name string
				v    []string
			}{{"trustDomains", s.GetTrustDomains()}, {"notTrustDomains", s.GetNotTrustDomains()}} {
				for x, td := range k.v {
					c.checkWildcardValue(sp.Field(k.name).Index(x), td)
					if strings.Contains(td, "/") {
						c.errorf(sp.Field(k.name).Index(x), "trust domain %q cannot contain '/'; want a name such as cluster.local", td)
					}
				}
			}
			if custom {
				for _, k := range []string{"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts"} {
					if len(lists[k]) > 0 {
						c.errorf(sp.Field(k), "not supported with action CUSTOM; the external authorizer decides on identities, match on ipBlocks or the operation instead")
					}
				}
				if len(s.GetTrustDomains()) > 0 || len(s.GetNotTrustDomains()) > 0 {
					c.errorf(sp.Field("trustDomains"), "not supported with action CUSTOM")
				}
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
			for _, k := range []string{"paths", "notPaths"} {
				for x, path := range lists[k] {
					c.checkPathTemplate(op.Field(k).Index(x), path)
				}
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
			c.checkNonEmptyLists(wp, map[string][]string{"values": w.GetValues(), "notValues": w.GetNotValues()})
			if custom && customUnsupportedKey(w.GetKey()) {
				c.errorf(wp.Field("key"), "%q is not supported with action CUSTOM; the external authorizer decides on identities", w.GetKey())
			}
			if w.GetKey() == "source.serviceAccount" {
				c.checkServiceAccounts(wp.Field("values"), w.GetValues())
				c.checkServiceAccounts(wp.Field("notValues"), w.GetNotValues())
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

// customUnsupportedKey reports condition keys about identities, which an
// external (CUSTOM) authorizer cannot be given.
func customUnsupportedKey(key string) bool {
	switch key {
	case "source.namespace", "source.serviceAccount", "source.trustDomain", "source.principal":
		return true
	}
	return strings.HasPrefix(key, "request.auth.")
}

// checkServiceAccounts checks "name" or "namespace/name" service account
// values (no wildcards, at most 16).
func (c *checker) checkServiceAccounts(p Path, values []string) {
	if len(values) > 16 {
		c.errorf(p, "%d service accounts; at most 16 are allowed, use namespaces or principals for more", len(values))
	}
	for i, v := range values {
		switch ns, sa, found := strings.Cut(v, "/"); {
		case v == "":
			// reported as an empty value
		case strings.Contains(v, "*"):
			c.errorf(p.Index(i), "service account %q cannot contain '*'; name it, or match namespaces or principals instead", v)
		case strings.Count(v, "/") > 1 || (found && (ns == "" || sa == "")):
			c.errorf(p.Index(i), "%q is not a service account; want name or namespace/name", v)
		case len(v) > 320:
			c.errorf(p.Index(i), "service account %q is longer than 320 characters", v)
		}
	}
}

// checkWildcardValue checks a value where '*' may stand once, at the start
// or the end ("*", "prefix*", "*suffix").
func (c *checker) checkWildcardValue(p Path, v string) {
	if n := strings.Count(v, "*"); n > 1 || (n == 1 && !strings.HasPrefix(v, "*") && !strings.HasSuffix(v, "*")) {
		c.errorf(p, "%q: '*' may appear once, at the start or the end", v)
	}
}

// checkPathTemplate checks a path with templates: "{*}" matches one
// segment and "{**}" the rest, which must come last; other segments of
// such a path must be plain path characters.
func (c *checker) checkPathTemplate(p Path, path string) {
	templated := strings.Contains(path, "{*}") || strings.Contains(path, "{**}")
	sawRest := false
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		switch {
		case (seg == "{*}" || seg == "{**}") && sawRest:
			c.errorf(p, "path %q: {**} matches the rest of the path, so it must be the last segment", path)
			return
		case seg == "{**}":
			sawRest = true
			continue
		case seg == "{*}":
			continue
		case strings.ContainsAny(seg, "{}"):
			c.errorf(p, "path %q: '{' and '}' are only allowed as whole {*} or {**} segments", path)
			return
		case templated && !pathLiteralRE.MatchString(seg):
			c.errorf(p, "path %q: segment %q has characters a path cannot hold unescaped", path, seg)
			return
		}
	}
}

// pathLiteralRE is one path segment of RFC 3986 pchar characters.
var pathLiteralRE = regexp.MustCompile(`^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$`)

func (c *checker) checkConditionKey(p Path, key string) {
	if key == "" {
		c.errorf(p, "missing; name the attribute, such as request.headers[x-token] or source.ip")
		return
	}
	switch {
	case key == "destination.namespace":
		c.errorf(p, "%q is not an attribute; the policy's own namespace already limits where it applies", key)
		return
	case strings.HasPrefix(key, "destination.labels"):
		c.errorf(p, "%q is not an attribute; use the policy's selector to choose workloads by label", key)
		return
	case key == "destination.name" || key == "destination.user":
		c.errorf(p, "%q was removed from Istio's API; use the selector, or destination.ip/destination.port", key)
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

// strictHeaderRE is the header name a claim may be copied to.
var strictHeaderRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func (c *checker) requestAuthentication(ra *security.RequestAuthentication) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), ra.GetSelector())
	c.targetRefs(spec, ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs())
	for i, r := range ra.GetJwtRules() {
		p := spec.Field("jwtRules").Index(i)
		if r.GetIssuer() == "" && r.GetJwksUri() == "" {
			c.errorf(p.Field("issuer"), "missing; name the token issuer (or at least the jwksUri its keys come from)")
		}
		for j, a := range r.GetAudiences() {
			if a == "" {
				c.errorf(p.Field("audiences").Index(j), "empty audience; name one, or remove the entry")
			}
		}
		if r.GetJwks() != "" {
			var set struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := json.Unmarshal([]byte(r.GetJwks()), &set); err != nil {
				c.errorf(p.Field("jwks"), "not a JSON Web Key Set: %v; want {\"keys\": [...]}", err)
			} else if len(set.Keys) == 0 {
				c.errorf(p.Field("jwks"), "holds no keys; want {\"keys\": [...]} with at least one public key")
			} else {
				for j, raw := range set.Keys {
					var k jose.JSONWebKey
					if err := k.UnmarshalJSON(raw); err != nil {
						c.errorf(p.Field("jwks"), "key %d is not a usable JSON Web Key: %v", j, err)
					} else if !k.Valid() {
						c.errorf(p.Field("jwks"), "key %d is not a valid JSON Web Key", j)
					}
				}
			}
		}
		for j, q := range r.GetFromParams() {
			if q == "" {
				c.errorf(p.Field("fromParams").Index(j), "empty query parameter name")
			}
		}
		for j, k := range r.GetFromCookies() {
			if k == "" {
				c.errorf(p.Field("fromCookies").Index(j), "empty cookie name")
			}
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
			} else if !strictHeaderRE.MatchString(h.GetHeader()) {
				c.errorf(hp.Field("header"), "%q is not allowed; a claim header name holds only letters, digits, '-' and '_'", h.GetHeader())
			}
			if h.GetClaim() == "" {
				c.errorf(hp.Field("claim"), "missing; name the claim to copy")
			}
		}
		if h := r.GetOutputPayloadToHeader(); h != "" && !strictHeaderRE.MatchString(h) {
			c.errorf(p.Field("outputPayloadToHeader"), "%q is not allowed; a header name holds only letters, digits, '-' and '_'", h)
		}
		c.checkDuration(p.Field("timeout"), r.GetTimeout())
	}
}
