// Package proxy composes trellis-proxy: it reads the bootstrap, starts the
// xDS client, compiles listeners and routes, runs the accept loops and the
// admin endpoints, and drains on shutdown. cmd/trellis-proxy only parses
// flags into Options and calls Run.
//
// Flow of one connection:
//
//	listener (accept, SO_ORIGINAL_DST hand-off, TLS/HTTP sniffing,
//	          filter-chain match)
//	  -> httpconn (HTTP/1.1 via http1, h2/h2c via x/net/http2):
//	       route match (route) -> fault, cors (filter) -> router
//	       (timeouts, retries, mirror, header manipulation)
//	  -> tcpproxy (weighted clusters, idle timeout, half-close)
//	  -> cluster manager (PROXY-CONTROL) picks a host
//	  -> pool (upstream keep-alive / multiplexed connections, keyed by
//	     host address)
//
// The seam with the control-side packages (owned by PROXY-CONTROL):
//
//   - xdsclient calls a handler Apply(typeURL, map[name]*anypb.Any) error;
//     this package owns the LDS/RDS handler (compile listeners and routes,
//     swap atomically, return an error to NACK) and forwards CDS/EDS to the
//     cluster manager.
//   - cluster.Manager.Get(name) returns the compiled cluster or nil (the
//     router answers 503 NR/UH). (*Cluster).Pick(lb context) returns a host
//     or nil (503 UH). Circuit breakers are tried before a request/retry
//     (overflow is 503 UO), and every attempt's outcome is reported to the
//     cluster (Report(host, outcome)) for outlier detection.
//   - The data path never imports the cluster package directly: httpconn
//     and tcpproxy declare the small interfaces they need (Upstreams,
//     Cluster, Host) and Run adapts the cluster manager to them, so each
//     side can be tested with a fake.
//   - stats counters and the telemetry recorder are bound once per listener
//     or cluster at compile time; the request path only increments them.
package proxy
