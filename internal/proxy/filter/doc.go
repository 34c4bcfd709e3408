// Package filter holds trellis-proxy's HTTP filters and their registry:
// JWT authentication (envoy.filters.http.jwt_authn, verifying tokens with
// package jwt and recording the claims as the exchange's Authn metadata),
// RBAC (envoy.filters.http.rbac, whose rules the network RBAC filter of
// package listener also evaluates on connections; its metadata principals
// read the Authn metadata), fault injection
// (envoy.filters.http.fault), CORS (envoy.filters.http.cors) and the
// router (envoy.filters.http.router, whose forwarding is package
// httpconn's), plus the string and header matchers they and the route
// table share.
//
// Flow: an HCM's http_filters -> CompileChain (once per listener update)
// -> Chain held by httpconn.Config; a route's typed_per_filter_config ->
// CompileRouteConfigs (once per route compile, called by package route)
// -> route.Route.Filters. Per request httpconn walks the Chain in order,
// handing each filter the Stream (the exchange) and the route's most
// specific config for it; nothing on that path allocates.
//
// Adding a filter takes one file and one registration:
//
//  1. In rbac.go (say) declare its Builder from the typed_config message
//     and the function compiling it into a Filter value, plus, when the
//     filter takes per-route config, that message and its compiler:
//
//     var rbac = withRoute(newBuilder(wellknown.HTTPRoleBasedAccessControl, compileRBAC), compileRBACRoute)
//
//  2. Write the Filter's Decode(s Stream, perRoute any) Status: read the
//     request through s, answer with s.Reply/s.Abort and return Stop, or
//     set response headers with s.SetResponseHeader and return Continue.
//     Compile everything (matchers, header values as []byte) at config
//     time; Decode must not allocate.
//
//  3. Add the Builder to builders in registry.go, and its row to the HTTP
//     filters table of docs/xds-contract.md (a test checks the table).
//
// A new response flag or kind of local reply is a new Stream method,
// implemented in httpconn/chain.go.
package filter
