package validate

import (
	"strings"
	"testing"
)

// TestNotEnforcedFinding: each security kind Trellis does not enforce yet
// is valid (no errors) and carries exactly one error-level finding naming
// the resource; other kinds carry none.
func TestNotEnforcedFinding(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // resource named by the finding; "" for none
	}{
		{"strict peer authentication (enforced)", obj("security.istio.io/v1", "PeerAuthentication", "mtls: {mode: STRICT}"), ""},
		{"allow nothing is enforced", obj("security.istio.io/v1", "AuthorizationPolicy", "{}"), ""},
		{"jwt (enforced)", obj("security.istio.io/v1beta1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwksUri: https://example.com/jwks.json"), ""},
		{"jwt by targetRef", obj("security.istio.io/v1", "RequestAuthentication", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\njwtRules:\n- issuer: me\n  jwksUri: https://example.com/jwks.json"), "RequestAuthentication ns/r"},
		{"virtual service", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, tc.yaml)
			for _, e := range res.Errors {
				t.Errorf("got error %s, want none", e)
			}
			if tc.want == "" {
				if len(res.NotEnforced) != 0 {
					t.Errorf("got findings %v, want none", res.NotEnforced)
				}
				return
			}
			if len(res.NotEnforced) != 1 {
				t.Fatalf("got %d findings %v, want 1", len(res.NotEnforced), res.NotEnforced)
			}
			f := res.NotEnforced[0]
			if f.Resource != tc.want || f.Source != "in.yaml#1" || !strings.HasPrefix(f.Message, "not enforced yet") {
				t.Errorf("got finding %q (resource %q, source %q), want one naming %s starting \"not enforced yet\"", f.String(), f.Resource, f.Source, tc.want)
			}
		})
	}
}

// TestNotEnforcedDoesNotHideErrors: an invalid security resource is still
// rejected with its field error.
func TestNotEnforcedDoesNotHideErrors(t *testing.T) {
	res := check(t, obj("security.istio.io/v1", "PeerAuthentication", "portLevelMtls:\n  8080: {mode: DISABLE}"))
	if len(res.Errors) == 0 || res.Errors[0].Field != "spec.portLevelMtls" {
		t.Errorf("got errors %v, want one at spec.portLevelMtls", res.Errors)
	}
}

// TestAuthorizationPolicyFindings: an AuthorizationPolicy's finding says
// exactly what is not enforced; CUSTOM is rejected, never ignored.
func TestAuthorizationPolicyFindings(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string // substrings of the finding; nil for none
	}{
		{"allow nothing", "{}", nil},
		{"deny by ip block", "action: DENY\nrules:\n- from: [{source: {ipBlocks: [10.0.0.0/8]}}]", nil},
		{"target ref", "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\nrules: [{}]", []string{"not enforced yet: targetRef(s)"}},
		{"audit by path", "action: AUDIT\nrules:\n- to: [{operation: {paths: [/x]}}]", nil},
		{"jwt principal (enforced)", "rules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]", nil},
		{"jwt claim (enforced)", "action: AUDIT\nrules:\n- when: [{key: \"request.auth.claims[group]\", values: [admin]}]", nil},
		{"namespaces", "rules:\n- from: [{source: {namespaces: [foo]}}]", []string{"not enforced for plaintext peers", "only match peers that presented a mesh certificate", "a plaintext caller (accepted under PERMISSIVE) never matches them"}},
		{"source.principal", "action: DENY\nrules:\n- when: [{key: source.principal, values: [a/b]}]", []string{"only match peers that presented a mesh certificate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, obj("security.istio.io/v1", "AuthorizationPolicy", tc.spec))
			for _, e := range res.Errors {
				t.Errorf("got error %s, want none", e)
			}
			if tc.want == nil {
				if len(res.NotEnforced) != 0 {
					t.Errorf("got findings %v, want none", res.NotEnforced)
				}
				return
			}
			if len(res.NotEnforced) != 1 {
				t.Fatalf("got findings %v, want one", res.NotEnforced)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.NotEnforced[0].Message, w) {
					t.Errorf("finding %q lacks %q", res.NotEnforced[0].Message, w)
				}
			}
			// Injected Kubernetes sidecars get their certificate
			// (test/e2e/kube TestInjectedSidecarGetsItsIdentity).
			if strings.Contains(res.NotEnforced[0].Message, "Kubernetes sidecars get no workload certificate") {
				t.Errorf("finding %q still says Kubernetes sidecars have no certificate", res.NotEnforced[0].Message)
			}
		})
	}
	res := check(t, obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nprovider: {name: ext}\nrules: [{}]"))
	found := false
	for _, e := range res.Errors {
		found = found || (e.Field == "spec.action" && strings.Contains(e.Message, "CUSTOM is not supported by Trellis yet"))
	}
	if !found {
		t.Errorf("CUSTOM: got errors %v, want one at spec.action", res.Errors)
	}
}
