// Package httpconn is trellis-proxy's HTTP connection manager (Envoy's
// envoy.filters.network.http_connection_manager): it serves one downstream
// connection, HTTP/1.1 with its own codec (package http1) or HTTP/2 and h2c
// through golang.org/x/net/http2, and runs each request through the
// pipeline: route selection (package route), fault and CORS (package
// filter), then the router: cluster pick, circuit breakers, timeouts,
// retries with back-off, mirroring, header manipulation and Envoy's
// x-forwarded-*, x-request-id and x-envoy-* headers.
//
// Each try of the router is an attempt (attempt.go): it gets a connection
// to the picked host from the cluster (an idle one kept on the host, or a
// new one), sends the request, reads the response head, and owns the
// connection until it releases it to the host or closes it.
//
// Hot path: for HTTP/1.1 one goroutine per downstream connection reads a
// request, picks a host, writes to a pooled upstream connection, reads the
// response and writes it downstream, with no goroutine hand-off, no maps,
// no proxy-wide lock and reused buffers. Compiled config is read through
// atomic pointers.
//
// Flow: listener (filter chain match) -> Manager.ServeConn -> route ->
// filters -> router -> attempt (cluster, host connections) -> Observer
// (access log, telemetry).
package httpconn
