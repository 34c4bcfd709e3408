package filter

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func testKey(t *testing.T) (jose.Signer, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: "k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"}}})
	return s, string(b)
}

func signed(t *testing.T, s jose.Signer, claims map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	o, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := o.CompactSerialize()
	return tok
}

// jwtChain is Istio's shape: one provider, requires_any of it and
// allow_missing, then an ALLOW RBAC filter needing a request principal
// and a groups claim.
func jwtChain(t *testing.T, jwks string) Chain {
	t.Helper()
	q, _ := json.Marshal(jwks)
	c, err := chainOf(t, `{http_filters: [
 {name: envoy.filters.http.jwt_authn, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication,
  providers: {origins-0: {issuer: "https://issuer.example", local_jwks: {inline_string: `+string(q)+`}, payload_in_metadata: "https://issuer.example",
   claim_to_headers: [{header_name: x-jwt-sub, claim_name: sub}], forward_payload_header: x-jwt-payload}},
  rules: [{match: {prefix: "/"}, requires: {requires_any: {requirements: [{provider_name: origins-0}, {allow_missing: {}}]}}}]}},
 {name: envoy.filters.http.rbac, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {policies: {p: {
  permissions: [{any: true}],
  principals: [{and_ids: {ids: [
   {metadata: {filter: istio_authn, path: [{key: request.auth.principal}], value: {string_match: {safe_regex: {regex: ".+"}}}}},
   {metadata: {filter: istio_authn, path: [{key: request.auth.claims}, {key: groups}], value: {list_match: {one_of: {string_match: {exact: dev}}}}}}]}}]}}}}},
 `+routerYAML+`]}`)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestJWTAuthnThenRBAC(t *testing.T) {
	signer, jwks := testKey(t)
	other, _ := testKey(t)
	chain := jwtChain(t, jwks)
	now := time.Now().Unix()
	claims := func(groups ...string) map[string]any {
		return map[string]any{"iss": "https://issuer.example", "sub": "alice", "exp": now + 600, "groups": groups}
	}
	run := func(hdr map[string]string) *stream {
		s := &stream{forwarding: true, method: "GET", path: "/", hdr: hdr}
		for i := range chain {
			if chain[i].Filter.Decode(s, nil) == Stop {
				break
			}
		}
		return s
	}
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

	if s := run(nil); s.answered != 403 {
		t.Errorf("no token: answered %d, want 403 from RBAC", s.answered)
	}
	s := run(bearer(signed(t, signer, claims("dev"))))
	if s.answered != 0 || !s.forwarded {
		t.Fatalf("valid token in group dev: answered %d %q, want forwarded", s.answered, s.details)
	}
	if _, ok := s.hdr["authorization"]; ok {
		t.Error("forward false: the Authorization header reached the upstream")
	}
	if s.hdr["x-jwt-sub"] != "alice" || s.hdr["x-jwt-payload"] == "" {
		t.Errorf("claim and payload headers: %v", s.hdr)
	}
	if s.authn.Claims.Principal() != "https://issuer.example/alice" {
		t.Errorf("principal %q", s.authn.Claims.Principal())
	}
	if s := run(bearer(signed(t, signer, claims("ops")))); s.answered != 403 {
		t.Errorf("valid token, other group: answered %d, want 403", s.answered)
	}
	for name, tok := range map[string]string{
		"Jwt verification fails":       signed(t, other, claims("dev")),
		"Jwt is expired":               signed(t, signer, map[string]any{"iss": "https://issuer.example", "sub": "a", "exp": now - 3600}),
		"Jwt issuer is not configured": signed(t, signer, map[string]any{"iss": "https://other.example", "sub": "a", "exp": now + 600}),
	} {
		s := run(bearer(tok))
		if s.answered != 401 || s.body != name || !strings.HasPrefix(s.details, "jwt_authn_access_denied{") {
			t.Errorf("%s: answered %d %q %q, want 401", name, s.answered, s.body, s.details)
		}
	}
}

func TestJWTAuthnRejectsUnsupported(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{`providers: {p: {remote_jwks: {http_uri: {uri: "https://x/jwks", cluster: c, timeout: 1s}}}}, rules: [{match: {prefix: "/"}, requires: {provider_name: p}}]`, `providers["p"].remote_jwks`},
		{`providers: {p: {local_jwks: {inline_string: "{"}}}, rules: [{match: {prefix: "/"}, requires: {provider_name: p}}]`, `providers["p"].local_jwks: invalid JWKS`},
		{`providers: {p: {local_jwks: {inline_string: "{\"keys\":[]}"}, from_headers: [{value_prefix: "x"}]}}, rules: [{match: {prefix: "/"}, requires: {provider_name: p}}]`, `providers["p"].from_headers[0].name`},
		{`providers: {p: {local_jwks: {inline_string: "{\"keys\":[]}"}}}, rules: [{match: {prefix: "/api"}, requires: {provider_name: p}}]`, `rules[0].match`},
		{`providers: {p: {local_jwks: {inline_string: "{\"keys\":[]}"}}}, rules: [{match: {prefix: "/"}, requires: {provider_name: q}}]`, `"q" is not a configured provider`},
	} {
		_, err := chainOf(t, `{http_filters: [{name: j, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, `+c.cfg+`}}, `+routerYAML+`]}`)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}
