// Package cluster is the proxy's cluster manager: it compiles CDS clusters,
// bootstrap static clusters and EDS load assignments into plain structs,
// swaps them atomically, and answers the data path's one question per
// attempt: which host (Cluster.Pick).
//
// Flow: the xDS client hands CDS and EDS resources to Manager.UpdateClusters
// and Manager.UpdateEndpoints, which validate everything first (an error
// NACKs the update and the previous clusters keep serving), then publish a
// new name→*Cluster map. A cluster whose proto did not change keeps its
// runtime state (outlier ejections, circuit-breaker counts, round-robin
// position). Per request the data path does Manager.Get (one atomic load and
// a map read), Cluster.TryRequest (circuit breaker), Cluster.Pick (see
// package lb), and after the attempt Cluster.Report (stats, per-host
// counters, outlier detection).
//
// Connections: a cluster hands the data path its upstream connections
// (Cluster.Conn for HTTP/1.1, Cluster.H2Conn for HTTP/2): an idle one kept
// on the picked host (package pool), else a new one dialled with the
// cluster's Dialer within max_connections; at that limit requests wait in
// the cluster's pending queue, bounded by max_pending_requests (overflow:
// ErrPendingOverflow, the data path's 503 UO); a host without any
// connection still gets one. Release hands a connection back to its host;
// hosts that leave the cluster close theirs.
//
// Supported discovery types: EDS, STATIC, STRICT_DNS (and LOGICAL_DNS,
// resolved the same way), ORIGINAL_DST. Upstream TLS (transport_socket
// envoy.transport_sockets.tls, DestinationRule tls SIMPLE/MUTUAL) compiles
// into Cluster.TLS from files or inline data: trusted CA, exact DNS or URI
// SAN matchers, SNI, client certificate; mesh mTLS (ISTIO_MUTUAL, auto
// mTLS) names the proxy's own SDS secrets `default` and `ROOTCA`, read
// from Options.Secrets at each handshake. transport_socket_matches pick
// each host's transport by its endpoint metadata
// (envoy.transport_socket_match, e.g. tlsMode: istio); a match that needs
// `default` is passed over while the proxy has none. Other SDS names
// (credentialName) are rejected. Fields that would change
// behaviour but are not implemented are rejected with the field path,
// never ignored.
package cluster
