// Package controlplane wires trellisd for Kubernetes: it connects to the
// API server, starts the Istio CRD config source (config/kube), the
// Services/EndpointSlices/Pods registry (registry/kube) and the gateway
// credential watcher, adds them to trellisd.Options, and serves the
// injection and validation webhooks on :15017 with the certificate that
// `trellis install` put in the trellisd-webhook-certs Secret.
//
// cmd/trellisd calls Wire when started with --kube (the flags the installed
// Deployment passes are listed on Options).
package controlplane
