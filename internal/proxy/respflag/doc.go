// Package respflag is Envoy's response-flag vocabulary (UH, UF, UO, NR,
// ...): the short codes the HTTP connection manager and the TCP proxy set
// on a request or connection, and that access logs and Istio's
// response_flags label render. It sits below both filters so that neither
// imports the other.
package respflag
