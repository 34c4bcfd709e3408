// Package translate turns a config snapshot and a registry snapshot into
// Envoy v3 resources for one proxy, in Istio's layout (docs/xds-contract.md).
// It is a pure function: no globals, no clock, no I/O, no logging; output is
// sorted by name so the same Input always gives the same bytes.
//
// Flow: config.Snapshot + registry.Snapshot + Proxy -> Translate -> xds/server.
//
// Entry points: Translate (everything for one proxy); Outbound, Inbound,
// Endpoints and OutboundProxy let a server share work between proxies
// (Translate == Merge(Outbound, Inbound) plus Endpoints of its EDS
// clusters; Outbound and Endpoints read only the proxy's OutboundProxy,
// whose Key can key a cache); ProxyFromNode reads a Proxy from an xDS node.
//
// Files by concern: scope.go (what a proxy sees: Sidecar egress, exportTo,
// VirtualService and DestinationRule lookup), outbound.go (sidecar 15001
// and per-port listeners, route configurations by port), routes.go and
// fault.go (VirtualService http routes), clusters.go and upstreamtls.go
// (outbound clusters and DestinationRule traffic policy), endpoints.go
// (EDS), inbound.go (15006 and inbound|PORT|| clusters), authz.go
// (AuthorizationPolicy as HTTP and network RBAC filters), authn.go
// (RequestAuthentication as the jwt_authn filter before them), gateway.go
// (router listeners, routes, secrets), grpc.go (proxyless gRPC API
// listeners), listeners.go and convert.go (shared builders), proxy.go (node
// parsing), outboundproxy.go (what outbound translation reads of a
// proxy). Tests: testdata/<case>/{input,proxy,output}.yaml golden files
// (go test -update), a traffic simulator (simulate_test.go) with one table
// per scenario, a determinism test and a consistency oracle.
package translate
