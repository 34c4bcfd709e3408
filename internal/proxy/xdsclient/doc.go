// Package xdsclient is the proxy's ADS client: it keeps one gRPC stream to
// the control plane (Delta xDS by default, State-of-the-World on request),
// subscribes in Envoy's order — CDS (wildcard), then EDS for the clusters
// CDS named, then LDS (wildcard), then RDS for the route configurations the
// listeners' connection managers name — and hands each type's full current
// resource set to a Handler.
//
// It sits at the very front of the proxy's config flow:
//
//	trellisd ──ADS──▶ xdsclient ──Apply(type, resources)──▶ cluster manager / listener compiler
//
// A Handler error NACKs the update (error_detail, the last good version is
// kept and the previous config keeps serving). The client reconnects with
// exponential back-off and jitter, keeps the last good config while
// disconnected, and on reconnect tells the server which versions it holds.
// Per-type version, nonce and last error, and per-resource versions, are
// exposed for the admin /config_dump page.
package xdsclient
