package filter

// RBACOutcome is what one RBAC rule set decided for a request.
type RBACOutcome struct {
	Action RBACAction
	// Allowed reports whether the rule set lets the request through (a
	// LOG rule set lets every request through).
	Allowed bool
	// Policy is the policy that decided (for LOG, the one recorded); nil
	// when none matched.
	Policy *RBACPolicy
}

// RBACVerdict is what one RBAC filter of a chain decided for a request,
// as its Decode does: the same compiled rules, the same evaluation.
type RBACVerdict struct {
	// Filter is the http_filters entry's name.
	Filter string
	// RBACOutcome is the enforced rules' outcome (allowed when the filter
	// enforces none).
	RBACOutcome
	// Enforced reports whether the filter has enforced rules.
	Enforced bool
	// Shadow is the shadow rules' outcome when HasShadow.
	Shadow    RBACOutcome
	HasShadow bool
}

// Details is the response code details a denial by v carries
// (rbac_access_denied_matched_policy[NAME], [none] when no policy
// decided); "" when v lets the request through.
func (v *RBACVerdict) Details() string {
	if v.Allowed {
		return ""
	}
	if v.Policy != nil {
		return v.Policy.Details
	}
	return noPolicy
}

// rules returns the rule sets in force for a request whose route carries
// perRoute: a route's RBACPerRoute replaces the filter's own config.
func (f rbacFilter) rules(perRoute any) *RBAC {
	if p, ok := perRoute.(*RBAC); ok {
		return p
	}
	return f.def
}

// verdict evaluates c for s, shadow rules first, as Decode does.
func (c *RBAC) verdict(s Stream) (v RBACVerdict) {
	if c.Shadow != nil {
		v.HasShadow = true
		v.Shadow.Action = c.Shadow.Action
		v.Shadow.Allowed, v.Shadow.Policy = c.Shadow.Evaluate(s)
	}
	v.Allowed = true
	if c.Rules == nil {
		return v
	}
	v.Enforced, v.Action = true, c.Rules.Action
	v.Allowed, v.Policy = c.Rules.Evaluate(s)
	return v
}

// CheckRBAC runs s through the chain's RBAC filters in chain order, each
// with the per-route config the route's rc gives it, and returns their
// verdicts up to and including the first that denies (the request stops
// there, as on the request path). Other filters are not run: the answer
// is what authorization decides, not what a fault or CORS filter would do.
func (c Chain) CheckRBAC(s Stream, rc RouteConfigs) []RBACVerdict {
	var out []RBACVerdict
	for i := range c {
		l := &c[i]
		f, ok := l.Filter.(rbacFilter)
		if !ok {
			continue
		}
		v := f.rules(rc.For(l)).verdict(s)
		if !v.Enforced && !v.HasShadow {
			continue
		}
		v.Filter = l.Name
		out = append(out, v)
		if !v.Allowed {
			break
		}
	}
	return out
}

// RBACPolicies returns the compiled rule sets of the chain's RBAC filters
// by filter name, in chain order (their route-independent config).
func (c Chain) RBACPolicies() []RBACFilterRules {
	var out []RBACFilterRules
	for i := range c {
		if f, ok := c[i].Filter.(rbacFilter); ok {
			out = append(out, RBACFilterRules{Filter: c[i].Name, RBAC: f.def})
		}
	}
	return out
}

// RBACFilterRules names one RBAC filter's compiled config.
type RBACFilterRules struct {
	Filter string
	*RBAC
}
