// Package tlsterm terminates downstream TLS for trellis-proxy: the
// envoy.transport_sockets.tls transport socket of a listener filter chain,
// configured by an envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext.
//
// Where it sits in the flow:
//
//	listener (tls_inspector reads SNI) → filter chain matched on server_names
//	  → tlsterm.Context (handshake: certificate, ALPN, client verification)
//	  → HTTP connection manager (h2 or http/1.1 by the negotiated ALPN) or tcp_proxy
//
// Secrets arrive over ADS (SDS) and go into a Store,
// swapped atomically as a whole after every secret validated. A Context is
// compiled once per filter chain by Compile and never changes; it resolves
// SDS certificates and trusted CAs from the Store at handshake time, so a
// rotated secret applies to the next handshake without rebuilding the
// listener. A secret that has not arrived fails the handshake (Envoy would
// keep the listener warming; Trellis fails closed) and counts
// ssl.missing_secret.
package tlsterm
