// Package pool holds trellis-proxy's upstream connections. A Dialer opens
// them for one cluster (connect timeout, bind source, TCP keep-alive and
// the cluster's TLS origination); an Endpoint, which every lb.Host carries,
// keeps the host's idle HTTP/1.1 keep-alive connections (LIFO, each with
// pooled bufio buffers, peeked for a remote close before reuse) and its
// HTTP/2 connections (net/http client connections, multiplexed), under
// the host's own small lock: no proxy-wide map and no key per request.
//
// Flow: httpconn's upstream attempt asks the cluster for a connection to
// the picked host -> the cluster takes it from the host's Endpoint or
// dials one with its Dialer (within its circuit breakers) -> the attempt
// writes the request and reads the response -> the connection goes back
// to the Endpoint when the exchange ended cleanly, or is closed.
package pool
