// Package registry is the service registry model: services with their ports
// and virtual IPs, and the endpoints (workload instances) behind them.
// Sources (registry/serviceentry from ServiceEntry/WorkloadEntry,
// registry/kube from Services/EndpointSlices/Pods, registry/memory for tests
// and merged views) implement Source; the translator reads only Snapshots.
// Merge combines the snapshots of several sources; ResolveHost,
// HostMatches and ParseProtocol are the Istio naming rules every source and
// the translator share.
//
// Flow: (ServiceEntries | Kubernetes) -> Source -> Snapshot (-> Merge) ->
// xds/translate.
package registry
