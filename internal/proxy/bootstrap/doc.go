// Package bootstrap loads the proxy's Envoy v3 bootstrap — from a YAML or
// JSON file (Load) or built from command-line flags and the environment
// (FromFlags) — and validates it with field paths in every error.
//
// It is the first step of the proxy's flow: the bootstrap gives the node
// identity, the admin address, the static listeners and clusters, and the
// ADS server (dynamic_resources.ads_config) the xDS client connects to.
// Both entry points produce the same *bootstrapv3.Bootstrap so the rest of
// the proxy has one code path.
package bootstrap
