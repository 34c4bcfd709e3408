// Package kube is the Kubernetes config source: it watches every Istio
// kind Trellis reads (VirtualService, DestinationRule, Gateway, ...)
// through dynamic informers and keeps the valid objects in a config.Store
// under the source name "kube".
//
// Each CRD serves several versions (v1alpha3, v1beta1, v1) over one stored
// object, so one informer per kind, on the newest served version Trellis
// accepts, sees objects written in any version. Objects are parsed and
// validated in the informer's transform (so the store holds only the
// converted config.Resource); an invalid object is left out, logged, and
// reported as a Kubernetes Warning event on the object, and the rest keeps
// working. Kinds whose CRD is not installed yet are picked up when it is.
package kube
