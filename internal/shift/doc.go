// Package shift is Trellis's built-in traffic-shifting controller: the
// "burst" watcher of the multi-cluster walkthrough made part of the mesh.
//
// It sits beside the control plane, not in it. A Controller samples one
// request rate from Prometheus (istio_requests_total as the proxies report
// it), keeps a two-state machine with hysteresis (burst above Up, natural
// below Down, no change in between) and, on each state change, has an
// Applier rewrite the weights of a VirtualService's HTTP routes so that all
// traffic goes to one subset. The rewritten VirtualService then flows the
// usual way: the file watcher (local mode) or the Kubernetes informer picks
// it up, trellisd translates it and pushes new routes to the proxies.
//
// Appliers: FileApplier edits the YAML under trellisd's --config-dir in
// place (one atomic rename per change, everything else in the file kept
// byte for byte); KubeApplier updates the VirtualService object through the
// dynamic client. `trellis shift` (internal/cli/shift.go) wires them up.
package shift
