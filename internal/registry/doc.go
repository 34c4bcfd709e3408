// Package registry is the service registry model: services with their ports
// and virtual IPs, and the endpoints (workload instances) behind them.
// Sources (registry/serviceentry from ServiceEntry/WorkloadEntry,
// registry/kube from Services/EndpointSlices/Pods) implement Source; the
// translator reads only Snapshots.
package registry
