// Package server is trellisd's ADS server: it serves Envoy v3 xDS over gRPC,
// both state-of-the-world and Delta (incremental), to trellis-proxy, Envoy
// and proxyless gRPC clients.
//
// It knows nothing of Istio types. A Generator turns a connected node into a
// Snapshot of marshalled resources; the server tracks, per connection and
// per type, what the client subscribed to, what was sent, what was ACKed and
// the last NACK, and sends only what changed. Push wakes every connection
// through a one-slot, coalescing queue, so a slow client never blocks the
// others and a newer push replaces an unsent older one.
//
// Flow: config + registry -> translate -> trellisd generator -> server -> proxies.
package server
