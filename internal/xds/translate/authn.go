package translate

import (
	"fmt"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/trellis-mesh/trellis/internal/config"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// JWTAuthnFilter is the name of the HTTP filter that verifies
// RequestAuthentication tokens; it goes before the RBAC filters.
const JWTAuthnFilter = "envoy.filters.http.jwt_authn"

// UnusableJWKS is the JWKS inlined for a jwtRule whose jwksUri trellisd
// could not fetch: a public key whose private half nobody holds, so every
// token of that issuer fails verification (401) rather than being
// accepted unchecked.
const UnusableJWKS = `{"keys":[{"use":"sig","kty":"RSA","kid":"trellis-no-key","alg":"RS256","n":"wUdP9GZkEVhld6iV4JimJzsW3rWaBCQcEj9aLU2BsmGBcmyYHUs9fbP97Rm9zQ1QSk6Qf5raMrX9_GF2IClPDGvrFG14XjvxWFGGil4t3OY1DdUGzVSr6LY2FBYoS7Dok0aelmfyvTSpm42VI8LgLn3Cn28dJ-Ky_hnMvBIWtxN44z_2GPfK2_PLYBqrkJFnOedsr-3h5W6dP6rbFp22JQHsQWNEkFyQ2jJ41Ar2HvLiCNcF3YW42FWuafVDJ9Qxsmq6UfcXcLSapgr5mhh2W6NySBjxzi4aD8-IzVJyNAuqtfW0C3rpSI-OVDo3h437tV0VM5aWRPuHEUMyCjOJCQ","e":"AQAB"}]}`

// requestAuthentications returns the RequestAuthentications that apply
// to the proxy (see workloadPolicies). Those with targetRef(s) apply to
// none (Trellis flags them).
func (s *scope) requestAuthentications() []*config.Resource {
	return s.workloadPolicies(config.KindRequestAuthentication, func(r *config.Resource) (map[string]string, bool) {
		ra, ok := r.Spec.(*security.RequestAuthentication)
		if !ok || ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0 {
			return nil, false
		}
		return ra.GetSelector().GetMatchLabels(), true
	})
}

// jwtFilters returns the jwt_authn filter of the RequestAuthentications
// applying to the proxy (nil when none does), shaped as Istio emits it:
// one provider origins-N per jwtRule, and one rule requiring any of them
// or no token at all, so a request without a token passes with no
// request principal while a present token that fails is refused (401).
func (s *scope) jwtFilters() []*hcmv3.HttpFilter {
	var rules []*security.JWTRule
	for _, r := range s.requestAuthentications() {
		rules = append(rules, r.Spec.(*security.RequestAuthentication).GetJwtRules()...)
	}
	if len(rules) == 0 {
		return nil
	}
	cfg := &jwtauthnv3.JwtAuthentication{Providers: map[string]*jwtauthnv3.JwtProvider{}, BypassCorsPreflight: true}
	var anyOf []*jwtauthnv3.JwtRequirement
	for i, rule := range rules {
		name := fmt.Sprintf("origins-%d", i)
		cfg.Providers[name] = s.jwtProvider(rule)
		anyOf = append(anyOf, &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: name}})
	}
	anyOf = append(anyOf, &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtauthnv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
			RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{RequiresAny: &jwtauthnv3.JwtRequirementOrList{Requirements: anyOf}}}},
	}}
	return []*hcmv3.HttpFilter{{Name: JWTAuthnFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}}
}

// jwtProvider translates one jwtRule. The keys are inline: the jwks
// field, else the document trellisd fetched from jwksUri (Input.JWKS),
// else UnusableJWKS.
func (s *scope) jwtProvider(rule *security.JWTRule) *jwtauthnv3.JwtProvider {
	jwks := rule.GetJwks()
	if jwks == "" {
		if doc, ok := s.in.JWKS[rule.GetJwksUri()]; ok && doc != "" {
			jwks = doc
		} else {
			jwks = UnusableJWKS
		}
	}
	p := &jwtauthnv3.JwtProvider{
		Issuer:    rule.GetIssuer(),
		Audiences: rule.GetAudiences(),
		JwksSourceSpecifier: &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}},
		Forward:              rule.GetForwardOriginalToken(),
		FromParams:           rule.GetFromParams(),
		FromCookies:          rule.GetFromCookies(),
		ForwardPayloadHeader: rule.GetOutputPayloadToHeader(),
		PayloadInMetadata:    rule.GetIssuer(),
	}
	for _, h := range rule.GetFromHeaders() {
		p.FromHeaders = append(p.FromHeaders, &jwtauthnv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for _, c := range rule.GetOutputClaimToHeaders() {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtauthnv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
	}
	return p
}

// JWKSURIs returns the jwksUri of every jwtRule without inline jwks in
// the snapshot, each with the RequestAuthentications (namespace/name)
// naming it: what trellisd fetches for Input.JWKS.
func JWKSURIs(cfg *config.Snapshot) map[string][]string {
	out := map[string][]string{}
	if cfg == nil {
		return out
	}
	for _, r := range cfg.List(config.KindRequestAuthentication) {
		ra, ok := r.Spec.(*security.RequestAuthentication)
		if !ok {
			continue
		}
		for _, rule := range ra.GetJwtRules() {
			if u := rule.GetJwksUri(); u != "" && rule.GetJwks() == "" {
				out[u] = append(out[u], nsOf(r)+"/"+r.Name)
			}
		}
	}
	return out
}
