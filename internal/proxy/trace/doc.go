// Package trace is trellis-proxy's distributed tracing (Envoy's HCM
// tracing with the OpenTelemetry and Zipkin tracers): it reads a
// request's trace context (W3C traceparent/tracestate, B3 multi-header
// and single "b3"), makes the sampling decision (the caller's, else the
// configured percentage), writes the proxy's span context into the request
// it forwards, and hands finished spans to a Reporter.
//
// A Reporter owns a bounded queue and one background goroutine that
// batches spans and exports them (OTLP over gRPC or HTTP with the
// go.opentelemetry.io/proto/otlp messages, or Zipkin v2 JSON). A full
// queue drops the span and counts it; a slow or dead collector never
// blocks a request.
//
// Flow: httpconn.Compile (Compile: the HCM's tracing field) ->
// exchange.prepare (Config.Start: extract, sample, inject) ->
// exchange.observe (Config.Finish: tags) -> Reporter queue -> exporter.
package trace
