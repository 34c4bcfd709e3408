// Package multicluster runs two real clusters side by side (two
// kube-apiservers with their etcds, from internal/kube/kubetest), each with
// its own trellisd process (multi-primary), and joins them with the remote
// secrets the trellis binary's create-remote-secret prints. It checks
// what each trellisd serves over xDS: endpoints merged from both clusters,
// each with its cluster and network, and a cluster's endpoints added and
// removed live as its secret is applied and deleted. For primary-remote
// (a remote-profile cluster without trellisd) it also runs the primary's
// CA and webhook: remote proxies' certificates from tokens the remote API
// server issued, and remote pods injected through the remote profile's
// webhook URL.
package multicluster
