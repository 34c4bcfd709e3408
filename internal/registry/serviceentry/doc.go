// Package serviceentry builds the registry from Istio configuration alone:
// ServiceEntries give the services (hosts, VIPs, ports, resolution,
// location) and their endpoints come from inline endpoints or from the
// WorkloadEntries the ServiceEntry's workloadSelector picks. This is the
// registry of the local (no Kubernetes) mode, and it also supplies
// ServiceEntries on top of the Kubernetes registry.
//
// Flow: config.Snapshot -> serviceentry.Build -> registry.Snapshot -> translate.
package serviceentry
