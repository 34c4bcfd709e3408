// Package trellisd wires the control plane together: config sources (a
// watched --config-dir, and any extra sources such as Kubernetes) feed a
// config.Store; the ServiceEntry registry and extra registries are merged
// into a registry snapshot; changes are debounced into one immutable state;
// a caching generator translates that state for each connected proxy; the
// ADS server (internal/xds/server) pushes it; debug and Prometheus HTTP
// endpoints show what happened.
//
// Flow: config.Store + registry.Source -> debounce -> state -> generator
// (translate, cached per outbound key) -> xds/server -> proxies.
package trellisd
