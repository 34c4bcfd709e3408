// Package config holds Istio configuration as Trellis sees it: resources
// parsed from YAML (files or Kubernetes CRDs) into istio.io/api types, and
// immutable snapshots of them that the translator reads.
//
// Flow: source (config/file, config/kube) -> Parse -> validate -> Store ->
// Snapshot -> xds/translate.
//
// Parse reads multi-document YAML or JSON (and v1 Lists) of
// networking.istio.io v1alpha3/v1beta1/v1 and security.istio.io v1beta1/v1
// kinds. Before decoding a spec with the istio.io/api type's own JSON
// decoder (so Trellis reads exactly what Istio reads: camelCase or
// snake_case names, Go durations such as "500ms"), it walks the spec against
// the proto descriptor and reports every unknown field, wrong type and bad
// enum value with its path ("spec.http[0].route[1].weight"). Objects of
// other APIs (Service, Deployment, ...) are returned as KubeObjects.
//
// Store merges named sources ("file:/path", "kube") into one Snapshot per
// change and tells subscribers.
package config
