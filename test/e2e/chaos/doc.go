// Package chaos is the mesh's reliability harness: it runs a local mesh in
// network namespaces with real interception (internal/local), drives a
// steady rate of HTTP/1.1 from inside the client's namespace through both
// sidecars, and disrupts the mesh while the load runs: VirtualService
// edits, trellisd killed and restarted, endpoints drained or killed,
// DestinationRule subsets changed and a service added, packet loss, delay
// and app resets on real packets, and sidecars hot-restarted (upgraded)
// under load (TestChaosHotRestart, on its own mesh). Each case prints the
// requests sent and failed (by status code, and by the client sidecar's
// response flags), p50/p99 before/during/after, and the proxies' and
// trellisd's RSS before and after, and asserts zero loss where the mesh
// promises it.
//
// It needs root and shares subnet names with the other namespace tests:
//
//	flock /tmp/trellis-netns.lock go test ./test/e2e/chaos -v               # short (CI)
//	flock /tmp/trellis-netns.lock go test ./test/e2e/chaos -v -timeout 30m -chaos.long
//
// RELIABILITY.md records the figures.
package chaos
