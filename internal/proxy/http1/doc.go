// Package http1 is trellis-proxy's HTTP/1.1 codec: it parses request and
// response heads into byte slices held in a per-connection buffer (no maps,
// no strings per request), decodes and encodes Content-Length and chunked
// bodies as streams (sending "100 Continue" on a body's first read, and
// dropping an unread body up to a bound), and writes heads back out.
//
// It sits under httpconn: one goroutine per downstream connection reads a
// request with ReadRequest, the router writes it to a pooled upstream
// connection with WriteRequestHead, reads the answer with ReadResponse and
// writes it downstream with WriteResponseHead. The Request and Response
// values are reused across requests on the same connection.
package http1
