// Package logexpr parses and evaluates the access log filter expressions
// of Istio's Telemetry API (accessLogging[].filter.expression, a CEL
// expression): the subset of comparisons on response.code,
// request.method, connection.mtls and response.flags joined by && and ||,
// with parentheses. config/validate rejects anything else with the
// parser's error; trellisd passes the expression through in Envoy's CEL
// access log filter; trellis-proxy compiles it once and evaluates it per
// request without allocating.
package logexpr
