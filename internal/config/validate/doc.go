// Package validate checks Istio resources the way Istio's validation does,
// reporting every problem with its source, resource and field path, and
// keeping errors (the resource is rejected) apart from warnings (it is
// accepted but probably not what the author meant).
//
// Flow: config.Parse -> validate.Resource (per object, used by the file
// watcher, the Kubernetes webhook and `trellis analyze`) -> config.Store ->
// validate.Snapshot (cross-resource warnings: subsets no DestinationRule
// defines, hosts no service answers) -> translate.
package validate
