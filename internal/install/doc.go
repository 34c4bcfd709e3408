// Package install renders and applies Trellis's Kubernetes manifests: the
// Istio CRDs (so `kubectl apply` of Istio YAML works), the trellis-system
// namespace, RBAC, the trellisd Deployment and Service, the injection and
// validation webhook configurations, and the ingress/egress gateways
// labelled istio: ingressgateway / istio: egressgateway.
//
// Flow: a profile (an IstioOperator-style YAML, see profiles/) is merged
// with -f files and --set values, checked against the accepted keys
// (unknown keys are errors naming the path), decoded into Settings, and
// rendered into a deterministic, sorted list of objects (Render). Apply
// sends them by server-side apply, component by component, and waits for
// readiness; Uninstall deletes what was rendered, or with purge everything
// labelled app.kubernetes.io/managed-by=trellis.
package install
