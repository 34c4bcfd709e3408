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
// Supported discovery types: EDS, STATIC, STRICT_DNS (and LOGICAL_DNS,
// resolved the same way), ORIGINAL_DST. Upstream TLS (transport_socket
// envoy.transport_sockets.tls) compiles into Cluster.TLS when the data path
// says it dials it (Options.UpstreamTLS); certificates and roots named over
// SDS come from Manager.ApplySecrets and are read at handshake time. Fields
// that would change behaviour but are not implemented are rejected with the
// field path, never ignored.
package cluster
