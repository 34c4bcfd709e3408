// Package telemetry records Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes, istio_request_messages_total and
// istio_response_messages_total for gRPC, and the istio_tcp_* family) with
// exactly Istio's label set, and renders them in the Prometheus text format
// at scrape time.
//
// It sits at the end of the data path: the connection manager (HTTP) calls
// Recorder.Request (and GRPCMessages) once per finished request; the TCP
// proxy meters each connection with a TCPConn: opened when its upstream is
// connected, bytes as they flow (flushed periodically for long
// connections), closed at the end. Label values are never formatted per request: the
// two sides of a call (Peer) and the destination service (Service) are
// interned once, when a cluster, an endpoint or a caller's peer metadata is
// first seen, and a request only looks up its series by a small struct of
// pointers in a copy-on-write map, then does atomic adds.
//
// A Telemetry's metrics overrides reach the proxy as Istio's istio.stats
// filter (CompileMetrics, compiled with the listener): per metric, dropped
// or with labels removed and upserted. Each series renders its label set
// per metric once, when it is created; the values of request-valued tags
// (request.headers[...] and the like) are interned and part of the
// series key as one pointer.
package telemetry
