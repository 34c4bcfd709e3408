// Package demo is `trellis demo`: one non-interactive command that brings
// up a local mesh (internal/local) with trellisd and the workloads of the
// seeds' bill-service and canary scenarios, applies their Istio YAML
// unchanged (embedded under scenarios/), measures each step from inside
// the front end's namespace through its sidecar, prints small tables and a
// summary of checks, and tears everything down.
package demo
