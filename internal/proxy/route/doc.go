// Package route compiles an Envoy RouteConfiguration into a plain,
// read-only route table and selects a route for a request: virtual host by
// domain (exact, then longest suffix wildcard, then longest prefix
// wildcard, then "*"), then the first route whose path, header and query
// matchers all hold. A selected route carries everything the router needs
// (weighted clusters, rewrites, timeouts, retry and mirror policies, header
// manipulation, and the per-filter configs of typed_per_filter_config,
// compiled by package filter's registry and merged most specific first).
//
// Flow: RDS (or an HCM's inline route_config) -> Compile -> *Config held in
// an atomic.Pointer by httpconn -> Select per request.
package route
