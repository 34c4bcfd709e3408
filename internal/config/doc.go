// Package config holds Istio configuration as Trellis sees it: resources
// parsed from YAML (files or Kubernetes CRDs) into istio.io/api types, and
// immutable snapshots of them that the translator reads.
//
// Flow: source (config/file, config/kube) -> Parse -> validate -> Store ->
// Snapshot -> xds/translate.
package config
