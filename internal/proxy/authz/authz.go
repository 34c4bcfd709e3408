package authz

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/listener"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// DefaultListener is the sidecar's inbound listener (15006), which a
// query without a listener is checked against.
const DefaultListener = "virtualInbound"

// Query describes a request. Every field is optional; the zero value is a
// plain-text GET / to the listener's own port from an unknown source.
type Query struct {
	// Listener is a listener name or port (default virtualInbound).
	Listener string `json:"listener,omitempty"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Host     string `json:"host,omitempty"`
	// Headers are request headers, names in any case.
	Headers []Header `json:"headers,omitempty"`
	// Principal is the source's mTLS identity (spiffe://TD/ns/NS/sa/SA);
	// with one, the connection is mesh mTLS. Namespace alone stands for
	// the principal spiffe://cluster.local/ns/NAMESPACE/sa/default.
	Principal string `json:"principal,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// SourceIP is the client's address (unset: ipBlocks rules do not
	// match); DestinationIP the address it connected to.
	SourceIP      string `json:"source_ip,omitempty"`
	DestinationIP string `json:"destination_ip,omitempty"`
	// Port is the destination port (default the listener's port): it
	// picks the inbound filter chain.
	Port uint32 `json:"port,omitempty"`
	// SNI is the server name of the TLS client hello (implies TLS).
	SNI string `json:"sni,omitempty"`
}

// Header is one request header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Answer is what the listener's authorization decides.
type Answer struct {
	Listener    string `json:"listener"`
	FilterChain string `json:"filter_chain,omitempty"`
	// Route is the route the request selects ("" for a TCP chain or none).
	Route   string `json:"route,omitempty"`
	Allowed bool   `json:"allowed"`
	// Decision is the verdict that decided: the denying filter's, or,
	// for an allowed request, the ALLOW filter's; nil when no RBAC filter
	// decided.
	Decision *Verdict `json:"decision,omitempty"`
	// Reason says it in words: "denied by DENY policy shop/deny-delete
	// rule 0", "no ALLOW policy matched", ...
	Reason string `json:"reason"`
	// Details are the response code details of the denial, as the access
	// log and /debug/failures show them.
	Details string `json:"details,omitempty"`
	// Verdicts are every RBAC filter's, in order, up to the first denial.
	Verdicts []Verdict `json:"filters"`
	// Principal is the source principal checked.
	Principal string `json:"principal,omitempty"`
	// Notes are facts that shape the answer (an assumed principal, a
	// plain-text chain that authenticates no peer, audit matches).
	Notes []string `json:"notes,omitempty"`
}

// Verdict is one RBAC filter's outcome.
type Verdict struct {
	Filter string `json:"filter"`
	// Kind is network (a connection's RBAC) or http.
	Kind string `json:"kind"`
	// Action is ALLOW, DENY or AUDIT (Envoy's LOG).
	Action  string `json:"action"`
	Allowed bool   `json:"allowed"`
	// Policy is the policy that matched; nil when none did.
	Policy *PolicyRef `json:"policy,omitempty"`
}

// PolicyRef names an RBAC policy and, for the ones translated from an
// AuthorizationPolicy (ns[NS]-policy[NAME]-rule[N]), that policy and rule.
type PolicyRef struct {
	// Name is the RBAC policy's name in the listener config.
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Policy    string `json:"policy,omitempty"`
	// Rule is the index in the AuthorizationPolicy's rules; -1 when Name
	// is not an AuthorizationPolicy's.
	Rule int `json:"rule"`
}

// String is "NS/NAME rule N", or the RBAC policy name.
func (p *PolicyRef) String() string {
	if p.Rule < 0 {
		return p.Name
	}
	return fmt.Sprintf("%s/%s rule %d", p.Namespace, p.Policy, p.Rule)
}

var istioPolicyName = regexp.MustCompile(`^ns\[([^\]]*)\]-policy\[([^\]]*)\]-rule\[([0-9]+)\]$`)

// Ref names an RBAC policy (nil for nil).
func Ref(p *filter.RBACPolicy) *PolicyRef {
	if p == nil {
		return nil
	}
	return refOf(p.Name)
}

func refOf(name string) *PolicyRef {
	r := &PolicyRef{Name: name, Rule: -1}
	if m := istioPolicyName.FindStringSubmatch(name); m != nil {
		r.Namespace, r.Policy = m[1], m[2]
		r.Rule, _ = strconv.Atoi(m[3])
	}
	return r
}

// ActionName is Istio's name of an RBAC action.
func ActionName(a filter.RBACAction) string {
	switch a {
	case filter.RBACDeny:
		return "DENY"
	case filter.RBACLog:
		return "AUDIT"
	}
	return "ALLOW"
}

// Find returns the listener a query names: by name, else by port.
func Find(ls map[string]*listener.Listener, name string) (*listener.Listener, error) {
	if name == "" {
		name = DefaultListener
	}
	if l := ls[name]; l != nil {
		return l, nil
	}
	if p, err := strconv.ParseUint(name, 10, 16); err == nil {
		var names []string
		for n, l := range ls {
			if l.Port == uint32(p) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) > 0 {
			return ls[names[0]], nil
		}
	}
	var known []string
	for n, l := range ls {
		known = append(known, fmt.Sprintf("%s (%s)", n, l.Address))
	}
	sort.Strings(known)
	return nil, fmt.Errorf("listener %q: the proxy has no such listener; it has %s", name, strings.Join(known, ", "))
}

// Check answers q against the listener it names.
func Check(ls map[string]*listener.Listener, q Query) (*Answer, error) {
	l, err := Find(ls, q.Listener)
	if err != nil {
		return nil, err
	}
	cq, a, err := request(l, q)
	if err != nil {
		return nil, err
	}
	r := l.CheckRBAC(cq)
	if r.Chain == nil {
		a.Reason = fmt.Sprintf("no filter chain of listener %s matches the connection (port %d, %s): the proxy closes it", l.Name, cq.Conn.Local.Port(), transportOf(cq.Conn))
		return a, nil
	}
	a.FilterChain = r.Chain.Name
	if r.Chain.TLS == nil && cq.Conn.PeerCertificate {
		a.Notes = append(a.Notes, fmt.Sprintf("filter chain %q is plain text: it authenticates no peer, so the principal is not checked", r.Chain.Name))
	}
	for _, v := range r.Network {
		a.Verdicts = append(a.Verdicts, verdict(v, "network"))
	}
	if r.HTTP != nil {
		a.Route = r.HTTP.Route
		for _, v := range r.HTTP.Verdicts {
			a.Verdicts = append(a.Verdicts, verdict(v, "http"))
			if v.HasShadow {
				a.Notes = append(a.Notes, fmt.Sprintf("%s: shadow rules would %s (%s)", v.Filter, map[bool]string{true: "allow", false: "deny"}[v.Shadow.Allowed], policyWords(Ref(v.Shadow.Policy))))
			}
		}
	}
	decide(a, r)
	return a, nil
}

func policyWords(p *PolicyRef) string {
	if p == nil {
		return "no policy matched"
	}
	return "policy " + p.String()
}

// transportOf says what kind of connection c is.
func transportOf(c filter.Conn) string {
	switch {
	case c.PeerCertificate:
		return "mTLS from " + c.PeerPrincipal
	case c.SNI != "":
		return "TLS for " + c.SNI
	}
	return "plain text"
}

// decide fills the answer's outcome from the verdicts.
func decide(a *Answer, r listener.CheckResult) {
	a.Allowed = true
	for i := range a.Verdicts {
		v := &a.Verdicts[i]
		switch {
		case v.Action == "AUDIT":
			if v.Policy != nil {
				a.Notes = append(a.Notes, "audited by AUDIT policy "+v.Policy.String())
			}
		case !v.Allowed:
			a.Allowed, a.Decision = false, v
			if v.Policy != nil {
				a.Reason = fmt.Sprintf("denied by %s policy %s", v.Action, v.Policy)
				a.Details = "rbac_access_denied_matched_policy[" + v.Policy.Name + "]"
			} else {
				a.Reason = "no ALLOW policy matched"
				a.Details = "rbac_access_denied_matched_policy[none]"
			}
			if v.Kind == "network" {
				a.Details = ""
				a.Reason += " (the connection is closed)"
			}
			return
		case v.Action == "ALLOW":
			a.Decision = v
		}
	}
	switch {
	case a.Decision != nil:
		a.Reason = fmt.Sprintf("allowed by ALLOW policy %s", a.Decision.Policy)
	case len(a.Verdicts) == 0:
		a.Reason = "no AuthorizationPolicy applies"
	default:
		a.Reason = "no DENY policy matched and no ALLOW policy applies"
	}
}

func verdict(v filter.RBACVerdict, kind string) Verdict {
	return Verdict{Filter: v.Filter, Kind: kind, Action: ActionName(v.Action), Allowed: v.Allowed, Policy: Ref(v.Policy)}
}

// request turns q into the listener's view of a connection and request.
func request(l *listener.Listener, q Query) (listener.CheckRequest, *Answer, error) {
	a := &Answer{Listener: l.Name, Verdicts: []Verdict{}}
	var cq listener.CheckRequest
	port := q.Port
	if port == 0 {
		port = l.Port
	}
	if port > 65535 {
		return cq, nil, fmt.Errorf("port: %d is not a port", port)
	}
	var src, dst netip.Addr
	var err error
	if q.SourceIP != "" {
		if src, err = netip.ParseAddr(q.SourceIP); err != nil {
			return cq, nil, fmt.Errorf("source_ip: %q is not an IP address", q.SourceIP)
		}
	}
	if q.DestinationIP != "" {
		if dst, err = netip.ParseAddr(q.DestinationIP); err != nil {
			return cq, nil, fmt.Errorf("destination_ip: %q is not an IP address", q.DestinationIP)
		}
	}
	principal := q.Principal
	if q.Namespace != "" {
		if principal == "" {
			principal = "spiffe://cluster.local/ns/" + q.Namespace + "/sa/default"
			a.Notes = append(a.Notes, "namespace "+q.Namespace+" without a principal: checked as "+principal)
		} else if !strings.Contains(principal, "/ns/"+q.Namespace+"/") {
			return cq, nil, fmt.Errorf("namespace: %q is not the namespace of principal %q", q.Namespace, principal)
		}
	}
	a.Principal = principal
	cq.Conn = filter.Conn{Remote: netip.AddrPortFrom(src, 0), Local: netip.AddrPortFrom(dst, uint16(port)), SNI: q.SNI,
		PeerCertificate: principal != "", PeerPrincipal: principal}
	method, path := q.Method, q.Path
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return cq, nil, fmt.Errorf("path: %q must start with /", path)
	}
	rq := route.Request{Method: []byte(strings.ToUpper(method)), Path: []byte(path), Scheme: []byte("http")}
	if q.Host != "" {
		rq.Authority = []byte(q.Host)
		rq.Headers = append(rq.Headers, http1.Header{Name: []byte("host"), Value: []byte(q.Host)})
	}
	for i, h := range q.Headers {
		n := strings.ToLower(strings.TrimSpace(h.Name))
		if n == "" || strings.HasPrefix(n, ":") {
			return cq, nil, fmt.Errorf("headers[%d].name: %q is not a header name (use method, path and host for the pseudo-headers)", i, h.Name)
		}
		if n == "host" {
			rq.Authority = []byte(h.Value)
		}
		rq.Headers = append(rq.Headers, http1.Header{Name: []byte(n), Value: []byte(h.Value)})
	}
	cq.Request = rq
	return cq, a, nil
}
