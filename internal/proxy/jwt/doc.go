// Package jwt verifies JSON Web Tokens for trellis-proxy's jwt_authn HTTP
// filter (package filter): a Provider is compiled once per listener
// update from one envoy.filters.http.jwt_authn provider (issuer,
// audiences, inline JWKS); per request the filter extracts a token and
// calls Provider.Verify, which checks the signature against the JWKS, the
// exp and nbf times (with Envoy's 60 s clock skew), the issuer and the
// audiences, and returns the token's claims.
//
// Flow: trellisd inlines each RequestAuthentication jwtRule's JWKS (the
// jwks field, or the document it fetched from jwksUri) -> jwt_authn
// filter config -> filter.compileJWT -> Provider -> Verify per request ->
// the claims become the exchange's authn metadata, which the RBAC filter
// matches (requestPrincipals, request.auth.*).
package jwt
