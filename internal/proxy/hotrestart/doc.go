// Package hotrestart hands a running trellis-proxy's listening sockets to
// its successor, with Envoy's hot restart semantics (--restart-epoch,
// --base-id, --drain-time-s, --parent-shutdown-time-s).
//
// Where it sits: cmd/trellis-proxy turns the flags into Options;
// internal/proxy.Run calls Connect (epoch > 0) before it builds anything,
// so the listener server and the admin servers take the inherited sockets
// instead of binding, and Listen (every epoch) so that a later epoch can
// find it. The proxy warms its configuration with the sockets held but
// not accepted on (the parent keeps accepting), then starts accepting and
// calls (*Child).Drain: the parent stops accepting, drains its connections
// and exits.
//
// The two processes talk over a SOCK_SEQPACKET unix socket in the abstract
// namespace of their network namespace, named after the base id and the
// epoch (SocketName); the sockets cross it as SCM_RIGHTS, so the same
// kernel socket (and its accept queue) is shared: no SYN meets a closed
// port, and SO_ORIGINAL_DST works on connections accepted by either. Only
// a peer of the same uid (or root) is served.
package hotrestart
