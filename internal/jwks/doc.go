// Package jwks fetches the JWKS documents that RequestAuthentication
// jwtRules name by jwksUri, for trellisd: proxies get the keys inline
// (local_jwks) and so need no egress to the identity provider.
//
// Flow: trellisd's rebuild -> translate.JWKSURIs(config) -> Fetcher.Sync
// (starts a fetch loop per new URI, stops those no longer named) -> each
// loop GETs its URI, keeps the last good document, refreshes it every
// Refresh (20 minutes, as istiod) and retries a failure every Retry ->
// a changed document calls the Subscribe callbacks (trellisd rebuilds and
// pushes) -> Fetcher.Documents feeds translate.Input.JWKS. A URI never
// fetched successfully is absent, so translation inlines
// translate.UnusableJWKS and its tokens are refused.
package jwks
