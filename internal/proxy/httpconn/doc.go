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
// Hot path: for HTTP/1.1 one goroutine per downstream connection reads a
// request, picks a host, writes to a pooled upstream connection, reads the
// response and writes it downstream, with no goroutine hand-off, no maps
// and reused buffers. Compiled config is read through atomic pointers.
//
// Flow: listener (filter chain match) -> Manager.ServeConn -> route ->
// filter chain -> router -> pool / cluster -> Observer (access log,
// telemetry).
package httpconn
