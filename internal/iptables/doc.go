// Package iptables builds and installs the sidecar's traffic interception
// rules (Istio's istio-iptables init step). It sits before the proxy in the
// flow: the rules send a workload's outbound TCP to the proxy's 15001
// listener and its inbound TCP to 15006, exempting the proxy's own uid/gid.
//
// Rules is a pure function of Options and is golden-tested; Apply and
// Cleanup feed those rules to iptables-restore (nft or legacy backend)
// through a Runner, which tests replace with a Recorder.
package iptables
