// Package netns creates named network namespaces (the ones `ip netns`
// lists, bound under /run/netns) and runs Go code inside them: a socket
// created inside a namespace stays there, so tests and the local runner can
// listen and dial in a workload's namespace without starting a process.
// It sits under internal/local, which builds the local mesh from them.
package netns
