// Package inject adds the Trellis sidecar to pods: the istio-init init
// container (running `trellis-proxy iptables` with the pod's
// traffic.sidecar.istio.io/* annotations), the istio-proxy container (uid
// 1337, ports, resources), and the pod's HTTP probes rewritten through the
// proxy's health port (15020).
//
// The proxy's lifecycle form depends on the cluster (Target, from the API
// server's version): on Kubernetes 1.29 and later a native sidecar (an init
// container with restartPolicy: Always right after istio-init, whose startup
// probe on 15021 holds the app until the proxy is ready, and which stops
// after the app); before, the first container with a postStart hook
// (`trellis-proxy wait`) holding the app. Istio's annotations
// sidecar.istio.io/nativeSidecar and proxy.istio.io/config
// (holdApplicationUntilProxyStarts, terminationDrainDuration, concurrency)
// choose per pod.
//
// It sits at the admission edge: the webhook package calls Pod for each
// pod the API server sends to /inject, and `trellis kube-inject` calls
// Manifests on YAML files offline. Both read the same Config, which
// `trellis install` renders into the trellis-sidecar-injector ConfigMap.
package inject
