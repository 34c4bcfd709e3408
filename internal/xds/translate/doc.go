// Package translate turns a config snapshot and a registry snapshot into
// Envoy v3 resources for one proxy. It is a pure function: no globals, no
// clock, no I/O, no logging; output is sorted by name so the same Input
// always gives the same bytes.
//
// Flow: config.Snapshot + registry.Snapshot + Proxy -> Translate -> xds/server.
package translate
