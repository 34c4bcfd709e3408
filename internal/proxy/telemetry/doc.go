// Package telemetry records Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes and the istio_tcp_* family) with exactly Istio's
// label set, and renders them in the Prometheus text format at scrape time.
//
// It sits at the end of the data path: the connection manager (HTTP) and
// the TCP proxy call Recorder.Request / Recorder.TCP once per finished
// request or connection. Label values are never formatted per request: the
// two sides of a call (Peer) and the destination service (Service) are
// interned once, when a cluster, an endpoint or a caller's peer metadata is
// first seen, and a request only looks up its series by a small struct of
// pointers in a copy-on-write map, then does atomic adds.
package telemetry
