// Package local runs a mesh on one Linux machine without Kubernetes, the
// way Istio runs on VMs: each workload gets its own network namespace
// joined to a bridge by a veth, the interception rules of
// `trellis-proxy iptables`, a trellis-proxy running as uid 1337 and the
// app as an ordinary user. The workloads are registered with trellisd by
// writing ServiceEntry/WorkloadEntry YAML into its config directory, and
// mesh names resolve inside the namespaces through generated hosts files.
// With Runner.CA each proxy also gets its own credential for trellisd's CA
// (credential.go).
//
// Spec (what to run) -> Plan (pure: names, addresses, YAML, hosts files)
// -> Up (namespaces, links, rules, processes; recorded in a state file)
// -> Down, or Cleanup of a crashed run's leftovers from its state file.
package local
