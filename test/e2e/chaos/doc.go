// Package chaos is the mesh's reliability harness: it runs a local mesh in
// network namespaces with real interception (internal/local), drives a
// steady rate of HTTP/1.1 from inside the client's namespace through both
// sidecars, and disrupts the mesh while the load runs: VirtualService
// edits, trellisd killed and restarted, endpoints drained or killed,
// DestinationRule subsets changed and a service added, packet loss, delay
// and app resets on real packets, and sidecars hot-restarted (upgraded)
// under load (TestChaosHotRestart, on its own mesh); and a soak
// (TestChaosSoak, on its own mesh): HTTP/1.1 and gRPC load with a config
// change every 10 s for -chaos.soak, sampling the sidecars' and trellisd's
// RSS, goroutines and heap, asserting no loss and that they stay flat.
// Each case prints the
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
// The soak's 30-minute run needs no lock (its mesh, 10.182.0.0/24 with
// prefix t82, shares nothing with the others):
//
//	nice -n 10 go test ./test/e2e/chaos -run TestChaosSoak -v -timeout 40m -chaos.soak 30m
//
// RELIABILITY.md records the figures.
package chaos
