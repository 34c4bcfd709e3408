// Package tagexpr parses the tag value expressions of Istio's Telemetry
// API (metrics[].overrides[].tagOverrides[NAME].value): the common forms
// Istio's documentation uses, a string literal ('foo'), a request
// attribute (request.headers['x-y'], request.host, request.method,
// request.path, request.url_path, request.protocol), a peer's workload
// field (upstream_peer.app, downstream_peer.namespace, ...), and a
// fallback chain (a | b | 'default': the first that has a value).
//
// config/validate rejects anything else with the parser's error, naming
// the supported forms; trellisd passes the expression through in the
// istio.stats filter's dimensions; trellis-proxy parses it again when it
// compiles that filter, evaluates the parts fixed per series (literals and
// peers) once, when a series is created, and the request attributes per
// request without allocating.
package tagexpr
