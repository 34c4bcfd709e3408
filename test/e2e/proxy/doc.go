// Package proxy holds trellis-proxy's end-to-end tests: the real
// trellis-proxy binary (built once in TestMain) takes its config from a real
// trellisd (run in-process) or from a static bootstrap, and real HTTP/1.1,
// h2c, gRPC, WebSocket and TCP backends on 127.0.0.1 answer. Without root
// the proxies' listeners are rebound to loopback ports (--rebind) instead of
// being reached through iptables interception.
package proxy
