// Package authz answers "would this request be allowed, and by which
// rule" from a running proxy's live listeners. It sits beside the request
// path, not in it: the admin API (/debug/authz, /debug/authz/check) hands
// it the compiled listeners the proxy serves, it picks the filter chain
// and route a described request would get and runs the chain's compiled
// network and HTTP RBAC filters on it (listener.Listener.CheckRBAC, the
// filters' own evaluation), then names the AuthorizationPolicy and rule
// that decided. `trellis authz check` prints its answers.
package authz
