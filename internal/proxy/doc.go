// Package proxy composes trellis-proxy: Run reads the bootstrap (an Envoy
// Bootstrap file, or one built from flags and the sidecar environment),
// compiles static clusters and listeners, starts the xDS client, the
// listeners and the admin endpoints, and on shutdown drains. cmd/trellis-
// proxy only parses flags into Options and calls Run.
//
// Flow of one connection:
//
//	listener (accept, SO_ORIGINAL_DST hand-off, TLS/HTTP sniffing,
//	          filter-chain match)
//	  -> httpconn (HTTP/1.1 via http1, h2/h2c via x/net/http2):
//	       route match (route) -> fault, cors (filter) -> router
//	       (timeouts, retries, mirror, header manipulation)
//	  -> tcpproxy (weighted clusters, idle timeout, half-close)
//	  -> cluster.Manager.Get -> (*cluster.Cluster).TryRequest / Pick /
//	     Report (PROXY-CONTROL: load balancing, breakers, outlier detection)
//	  -> upstream attempt: cluster.Conn / H2Conn -> the host's pool.Endpoint
//	     (idle keep-alive and multiplexed connections kept on each host;
//	     new ones dialled within max_connections, TLS origination,
//	     pending queue bounded by max_pending_requests)
//	  -> Observers: accesslog (when configured, with CEL filters via
//	     logexpr) and telemetry (Istio metrics, with x-envoy-peer-metadata
//	     exchange between sidecars); spans (trace, when the HCM has
//	     tracing) queued to one exporter per collector (tracing.go)
//
// Config flow: xdsclient hands each type's complete resource set to
// (*Proxy).Apply: CDS/EDS go to the cluster manager, SDS to the secret
// store TLS termination reads (decoded once), LDS and RDS are
// compiled here (listener.Compile, route.Compile) and swapped in whole; an
// error NACKs the update and the last good config keeps serving. An LDS
// listener whose RDS route configurations have not all arrived warms
// (warming.go): the previous version keeps serving, a new one is not
// bound, until the routes arrive or Options.InitialFetchTimeout (15 s)
// passes; /healthz/ready waits for the first listeners to warm.
//
// Hot restart (hotrestart.go, package hotrestart): with
// Options.HotRestart the proxy listens for a successor; an epoch above 0
// first takes the listening sockets of the previous one, warms (config
// and certificate) without accepting, then accepts and makes the parent
// stop accepting, drain and exit.
package proxy
