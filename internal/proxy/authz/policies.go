package authz

import (
	"sort"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/listener"
)

// Applied is one policy a listener's RBAC filters hold: an
// AuthorizationPolicy (its compiled rules grouped) or, for RBAC config
// not translated from one, the RBAC policy itself.
type Applied struct {
	Action    string `json:"action"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Rules are the indexes of the rules that became RBAC policies (an
	// ALLOW policy without rules has none: it allows nothing).
	Rules []int `json:"rules"`
	// Filters are the RBAC filters holding it (http, network).
	Filters []string `json:"filters"`
}

// Listing is what /debug/authz returns: the policies of a listener.
type Listing struct {
	Listener string `json:"listener"`
	// AllowNothing lists the ALLOW filters without policies, which deny
	// every request (Istio's allow-nothing).
	AllowNothing []string  `json:"allow_nothing,omitempty"`
	Policies     []Applied `json:"policies"`
}

// Policies lists the policies of the listener named (default
// virtualInbound), from every filter chain's RBAC filters.
func Policies(ls map[string]*listener.Listener, name string) (*Listing, error) {
	l, err := Find(ls, name)
	if err != nil {
		return nil, err
	}
	out := &Listing{Listener: l.Name, Policies: []Applied{}}
	byKey := map[[3]string]*Applied{}
	seenRule := map[string]bool{}
	seenEmpty := map[string]bool{}
	add := func(rules *filter.RBACRules, filterName string) {
		action := ActionName(rules.Action)
		if len(rules.Policies) == 0 && rules.Action == filter.RBACAllow && !seenEmpty[filterName] {
			seenEmpty[filterName] = true
			out.AllowNothing = append(out.AllowNothing, filterName)
		}
		for i := range rules.Policies {
			ref := refOf(rules.Policies[i].Name)
			k := [3]string{action, ref.Namespace, ref.Policy}
			if ref.Rule < 0 {
				k[2] = ref.Name
			}
			a := byKey[k]
			if a == nil {
				a = &Applied{Action: action, Namespace: k[1], Name: k[2], Rules: []int{}}
				byKey[k] = a
			}
			if !contains(a.Filters, filterName) {
				a.Filters = append(a.Filters, filterName)
			}
			if rk := action + "/" + ref.Name; ref.Rule >= 0 && !seenRule[rk] {
				seenRule[rk] = true
				a.Rules = append(a.Rules, ref.Rule)
			}
		}
	}
	chains := append([]*listener.Chain(nil), l.Chains...)
	if l.Default != nil {
		chains = append(chains, l.Default)
	}
	for _, c := range chains {
		for i, r := range c.RBAC {
			add(r, listener.NetworkRBACName(i, len(c.RBAC)))
		}
		if c.HTTP != nil {
			for _, f := range c.HTTP.Filters.RBACPolicies() {
				if f.Rules != nil {
					add(f.Rules, f.Filter)
				}
			}
		}
	}
	for _, a := range byKey {
		sort.Ints(a.Rules)
		sort.Strings(a.Filters)
		out.Policies = append(out.Policies, *a)
	}
	order := map[string]int{"AUDIT": 0, "DENY": 1, "ALLOW": 2}
	sort.Slice(out.Policies, func(i, j int) bool {
		a, b := out.Policies[i], out.Policies[j]
		if order[a.Action] != order[b.Action] {
			return order[a.Action] < order[b.Action]
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	sort.Strings(out.AllowNothing)
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
