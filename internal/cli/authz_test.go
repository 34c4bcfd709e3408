package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/proxy/authz"
)

func TestAuthzVerdictLine(t *testing.T) {
	deny := &authz.Verdict{Filter: "envoy.filters.http.rbac.deny", Kind: "http", Action: "DENY",
		Policy: &authz.PolicyRef{Name: "ns[shop]-policy[deny-delete]-rule[0]", Namespace: "shop", Policy: "deny-delete", Rule: 0}}
	allow := &authz.Verdict{Filter: "envoy.filters.http.rbac", Kind: "http", Action: "ALLOW", Allowed: true,
		Policy: &authz.PolicyRef{Name: "ns[shop]-policy[allow-get]-rule[1]", Namespace: "shop", Policy: "allow-get", Rule: 1}}
	raw := &authz.Verdict{Action: "ALLOW", Allowed: true, Policy: &authz.PolicyRef{Name: "hand-written", Rule: -1}}
	for _, tt := range []struct {
		a    authz.Answer
		want string
	}{
		{authz.Answer{Decision: deny, Reason: "denied by DENY policy shop/deny-delete rule 0"}, "DENIED by AuthorizationPolicy shop/deny-delete (DENY) rule 0"},
		{authz.Answer{Allowed: true, Decision: allow}, "ALLOWED by AuthorizationPolicy shop/allow-get (ALLOW) rule 1"},
		{authz.Answer{Allowed: true, Decision: raw}, "ALLOWED by RBAC policy hand-written (ALLOW)"},
		{authz.Answer{Decision: &authz.Verdict{Action: "ALLOW"}, Reason: "no ALLOW policy matched"}, "DENIED: no ALLOW policy matched"},
		{authz.Answer{Allowed: true, Reason: "no AuthorizationPolicy applies"}, "ALLOWED: no AuthorizationPolicy applies"},
	} {
		if got := verdictLine(tt.a); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestAuthzPolicyListing(t *testing.T) {
	var b bytes.Buffer
	printPolicies(&b, authz.Listing{Listener: "virtualInbound", AllowNothing: []string{"envoy.filters.http.rbac"}, Policies: []authz.Applied{
		{Action: "DENY", Namespace: "shop", Name: "deny-delete", Rules: []int{0, 2}},
		{Action: "ALLOW", Name: "hand-written", Rules: []int{}},
	}})
	want := `AuthorizationPolicies of listener virtualInbound, in the order they are evaluated:
ACTION  AuthorizationPolicy  RULES
DENY    shop/deny-delete     0,2
ALLOW   hand-written         -
An ALLOW filter without policies`
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("got:\n%s\nwant it to start with:\n%s", b.String(), want)
	}
	b.Reset()
	printPolicies(&b, authz.Listing{Listener: "virtualInbound"})
	if got := b.String(); got != "No AuthorizationPolicy applies to listener virtualInbound: every request is allowed.\n" {
		t.Errorf("empty listing: got %q", got)
	}
}

func TestAuthzCheckFlags(t *testing.T) {
	root := Root()
	root.SetArgs([]string{"authz", "check", "127.0.0.1:1", "--header", "novalue"})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `--header "novalue": use NAME=VALUE`) {
		t.Errorf("got %v, want the --header error", err)
	}
}
