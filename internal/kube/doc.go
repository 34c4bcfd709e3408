// Package kube builds Kubernetes clients for trellisd and the trellis CLI.
//
// It sits at the edge of the flow: informers and clients are created here,
// and the packages that read the cluster (registry/kube for Services,
// EndpointSlices and Pods; config/kube for the Istio CRDs; install for the
// manifests) convert what they read into Trellis's own small structs before
// anything else sees it. Nothing in the proxy imports this package.
package kube
