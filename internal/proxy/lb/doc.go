// Package lb picks an upstream host for a request: round robin (smooth
// weighted), random, least request (power of two choices), ring hash and
// maglev, over the healthy hosts of the best priority, with Envoy's priority
// failover (overprovisioning factor 1.4) and panic threshold.
//
// It sits between the cluster manager, which compiles EDS/STATIC endpoints
// into Hosts and builds a Balancer per cluster, and the data path, which
// calls Pick once per attempt. Pick only reads an immutable, precompiled
// view swapped atomically on health changes (Refresh); the round-robin pick
// is one atomic add and a slice index. Randomness is injected (Config.Rand)
// so tests can assert distributions with a seeded source. Each Host also
// carries its upstream connections (Host.Conns, package pool).
package lb
