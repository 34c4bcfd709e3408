// Package inject adds the Trellis sidecar to pods: the istio-init init
// container (running `trellis-proxy iptables` with the pod's
// traffic.sidecar.istio.io/* annotations), the istio-proxy container (uid
// 1337, ports, resources), and the app's HTTP probes rewritten through the
// proxy's health port (15020).
//
// It sits at the admission edge: the webhook package calls Pod for each
// pod the API server sends to /inject, and `trellis kube-inject` calls
// Manifests on YAML files offline. Both read the same Config, which
// `trellis install` renders into the trellis-sidecar-injector ConfigMap.
package inject
