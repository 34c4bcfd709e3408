// Package pool keeps trellis-proxy's upstream connections: HTTP/1.1
// keep-alive connections (each with its own pooled bufio reader and
// writer), idle per host address in LIFO order, checked for a remote close
// with one non-blocking peek before reuse; and an HTTP/2 transport
// (golang.org/x/net/http2, h2c with prior knowledge) that multiplexes
// requests per host address.
//
// Flow: httpconn router picks a host from the cluster manager -> Get(addr)
// -> writes the request on the connection -> Put when the exchange ended
// cleanly, Discard otherwise.
package pool
