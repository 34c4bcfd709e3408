// Package tcpproxy is trellis-proxy's TCP proxy network filter
// (envoy.filters.network.tcp_proxy): it picks a cluster (weighted), a host
// and a connection slot, connects with the cluster's connect timeout and
// max_connect_attempts, then copies bytes both ways with correct half-close
// (a FIN from one side is passed on as a FIN while the other direction keeps
// flowing) and closes both sides after idle_timeout without traffic.
//
// Flow: listener (filter chain match) -> Proxy.Serve -> cluster manager ->
// upstream connection -> Meter (telemetry: opened, bytes every
// FlushInterval, closed) and Observer (access log) at the close.
package tcpproxy
