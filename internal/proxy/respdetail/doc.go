// Package respdetail is Envoy's response-code-details vocabulary
// (%RESPONSE_CODE_DETAILS%: no_healthy_upstream, route_not_found,
// fault_filter_abort, ...) with Trellis's context appended: the cluster,
// the route configuration and virtual host, the VirtualService. The
// strings are built once, when a cluster or route configuration is
// compiled, so that a request that fails only copies a string header.
//
// Form: the Envoy value, then ";key=value" pairs, never whitespace, so
// that Istio's text access log stays one token per field and
// strings.Cut(details, ";") gives back exactly what Envoy would log.
//
// Flow: cluster.compile and route.Compile call it; httpconn sets the
// strings on the request's Record; the access log, the failure ring
// (/debug/failures) and `trellis explain` read them.
package respdetail
