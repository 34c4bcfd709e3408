// Package filter holds trellis-proxy's HTTP filters other than the router:
// fault injection (envoy.filters.http.fault) and CORS
// (envoy.filters.http.cors), plus the string matcher they and the route
// table share. Each filter's proto is compiled once (route compile time)
// into a plain struct; per request the connection manager only calls its
// methods with injected randomness.
//
// Flow: route.Compile -> filter.CompileFault/CompileCors -> httpconn runs
// them, in Envoy's order (fault, cors, router), before the router.
package filter
