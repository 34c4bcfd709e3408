package validate

import (
	"strings"

	security "istio.io/api/security/v1beta1"

	"github.com/trellis-mesh/trellis/internal/config"
)

// notEnforced lists the kinds Trellis parses and validates but does not
// enforce yet, with what that means for the user. Delete a kind's line when
// its enforcement lands end to end; every surface (analyze, the webhook,
// trellisd's log and /debug/configz) follows.
var notEnforced = map[string]string{}

// NotEnforced returns the error-level finding for a resource Trellis does
// not (fully) enforce yet, naming the resource ("Kind ns/name") and saying
// exactly what is not enforced, or false when all of it is.
func NotEnforced(r *config.Resource) (Issue, bool) {
	msg, ok := notEnforced[r.Kind]
	if ap, isAP := r.Spec.(*security.AuthorizationPolicy); isAP && r.Kind == config.KindAuthorizationPolicy {
		msg, ok = authorizationNotEnforced(ap)
	}
	if ra, isRA := r.Spec.(*security.RequestAuthentication); isRA && r.Kind == config.KindRequestAuthentication &&
		(ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0) {
		msg, ok = "not enforced yet: targetRef(s): the RequestAuthentication applies to no workload, so its tokens are not checked; use selector", true
	}
	if !ok {
		return Issue{}, false
	}
	return Issue{Source: r.Source, Resource: r.Display(), Message: msg}, true
}

// identityKeys are the when keys that match the peer's certificate.
var identityKeys = map[string]bool{"source.principal": true, "source.namespace": true, "source.serviceAccount": true, "source.trustDomain": true}

// authorizationNotEnforced lists what of an AuthorizationPolicy Trellis
// does not enforce (CUSTOM is rejected by validation instead).
func authorizationNotEnforced(ap *security.AuthorizationPolicy) (string, bool) {
	var parts []string
	if ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
		parts = append(parts, "not enforced yet: targetRef(s): the policy applies to no workload; use selector")
	}
	identity := false
	for _, rule := range ap.GetRules() {
		for _, f := range rule.GetFrom() {
			s := f.GetSource()
			if len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces())+
				len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts())+len(s.GetTrustDomains())+len(s.GetNotTrustDomains()) > 0 {
				identity = true
			}
		}
		for _, w := range rule.GetWhen() {
			if identityKeys[w.GetKey()] {
				identity = true
			}
		}
	}
	if identity {
		parts = append(parts, "not enforced for plaintext peers: principals, namespaces, serviceAccounts, trustDomains and source.principal/namespace only match peers that presented a mesh certificate (sidecars over auto mTLS, in local mode and on Kubernetes, and gateway MUTUAL listeners); a plaintext caller (accepted under PERMISSIVE) never matches them (an ALLOW rule on them denies it, a DENY rule on their not* forms denies it)")
	}
	if len(parts) == 0 {
		return "", false
	}
	return strings.Join(parts, "; "), true
}
