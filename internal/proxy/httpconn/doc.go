// Package httpconn is trellis-proxy's HTTP connection manager (Envoy's
// envoy.filters.network.http_connection_manager): it serves one downstream
// connection, HTTP/1.1 with its own codec (package http1) or HTTP/2 and h2c
// through golang.org/x/net/http2, and runs each request through the
// pipeline: route selection (package route), then the HCM's http_filters
// chain in config order (package filter compiles it; chain.go runs it and
// is the filters' Stream), whose terminal router does the cluster pick,
// circuit breakers, timeouts, retries with back-off, mirroring, header
// manipulation and Envoy's x-forwarded-*, x-request-id and x-envoy-*
// headers.
//
// A request is served in three parts. The exchange (exchange.go) is the
// downstream side: the request as the client sent it and the headers the
// connection manager adds, the sink (h1.go, h2.go) the response goes to,
// the proxy's own local replies, and the Record observed at the end. The
// router (router.go) is the terminal filter's per-request state and steps:
// redirects and direct responses, the cluster pick, the timeout and retry
// settings, request header manipulation and rewrites, buffering a small
// body for replay, mirrors, the attempt loop with its circuit breakers and
// back-off, and the final reply for the last attempt's outcome (the
// upstream response, streamed by upstream.go and upstream_h2.go, or
// Envoy's 503/504 local reply). Each try of the router is an attempt
// (attempt.go): it gets a connection to the picked host from the cluster
// (an idle one kept on the host, or a new one), sends the request, reads
// the response head, and owns the connection until it releases it to the
// host or closes it.
//
// Hot path: for HTTP/1.1 one goroutine per downstream connection reads a
// request, picks a host, writes to a pooled upstream connection, reads the
// response and writes it downstream, with no goroutine hand-off, no maps,
// no proxy-wide lock and reused buffers. Compiled config is read through
// atomic pointers.
//
// Responses the proxy makes itself (direct responses, redirects, fault
// aborts, 404 NR, 503, 504) and upstream answers that come before the
// request body was read do not wait for that body. On HTTP/1.1 the
// response is flushed, then the body is drained (up to 64 KiB within 1 s)
// to keep the connection; "100 Continue" is sent only when the router
// reads the body, so a client still holding its body back, or one with a
// longer body, gets "connection: close" and a half-close with a short
// linger. On HTTP/2 the handler returns without reading the body: the
// stream ends and golang.org/x/net/http2 sends RST_STREAM NO_ERROR.
//
// Tracing (Config.Tracing, package trace) hooks in at both ends of the
// exchange: prepare reads the caller's trace context, decides sampling and
// writes the proxy's span context into the request; observe reports a
// sampled request's span. A connection manager without tracing does
// neither.
//
// Flow: listener (filter chain match) -> Manager.ServeConn -> exchange
// (prepare: headers, trace context) -> route -> filter chain -> router ->
// attempt (cluster, host connections) -> router (response) -> exchange
// (observe: span, access log, telemetry).
package httpconn
