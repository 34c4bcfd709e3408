// Package kube is the Kubernetes registry source: it watches Services,
// EndpointSlices, Pods, Nodes and Namespaces through client-go informers
// and serves them as a registry.Snapshot (one mesh Service per Kubernetes
// Service, endpoints from EndpointSlices with pod labels, service account
// and locality).
//
// Informer objects are converted at the edge (informer transforms) into
// small structs holding only the fields the registry needs, so memory stays
// flat as the cluster grows. Changes are coalesced: a burst of events
// builds one new snapshot, then subscribers are called.
package kube
