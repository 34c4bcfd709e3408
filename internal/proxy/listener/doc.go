// Package listener runs trellis-proxy's listeners: it compiles LDS
// Listeners (filter chains with their HTTP connection manager or TCP proxy),
// binds and accepts, recovers the original destination (SO_ORIGINAL_DST)
// and hands a connection captured on the virtual outbound listener to the
// listener for that ip:port (else 0.0.0.0:port, else its own default
// chain), peeks at the first bytes when the filter chains need it (TLS
// ClientHello for SNI and ALPN, HTTP/1.x or h2c for protocol detection),
// and matches the filter chain the way Envoy does (destination port, then
// destination IP, then server name, transport protocol and application
// protocols).
//
// A filter chain's envoy.filters.network.rbac filters (before the
// terminal one) are checked once per connection, after TLS: a denied
// connection is closed.
//
// Flow: LDS -> Compile -> Server.Update (bind new sockets first, then swap;
// removed listeners stop accepting and drain) -> accept -> match -> TLS ->
// network RBAC -> httpconn.Manager.ServeConn or tcpproxy.Proxy.Serve.
package listener
