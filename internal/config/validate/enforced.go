package validate

import "github.com/trellis-mesh/trellis/internal/config"

// notEnforced lists the kinds Trellis parses and validates but does not
// enforce yet, with what that means for the user. Delete a kind's line when
// its enforcement lands end to end; every surface (analyze, the webhook,
// trellisd's log and /debug/configz) follows.
var notEnforced = map[string]string{
	config.KindAuthorizationPolicy:   "not enforced yet: Trellis does not apply AuthorizationPolicy, so every request is allowed as if this resource did not exist",
	config.KindRequestAuthentication: "not enforced yet: Trellis does not apply RequestAuthentication, so tokens are not checked and requests carry no request principal",
}

// NotEnforced returns the error-level finding for a resource whose kind
// Trellis does not enforce yet, naming the resource ("Kind ns/name"), or
// false when its kind is enforced.
func NotEnforced(r *config.Resource) (Issue, bool) {
	msg, ok := notEnforced[r.Kind]
	if !ok {
		return Issue{}, false
	}
	return Issue{Source: r.Source, Resource: r.Display(), Message: msg}, true
}
