// Package kube holds the end-to-end test of Trellis on Kubernetes: a real
// kube-apiserver and etcd (internal/kube/kubetest), `trellis install`, the
// seed's bill-service YAML applied unchanged, sidecar injection and config
// validation called by the API server itself, the kube config and registry
// sources, and the translated configuration of the front-tomcat proxy.
package kube
