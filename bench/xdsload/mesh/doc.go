// Package mesh is the Istio configuration of the xDS scale bench: the
// files bench/xdsload writes for a real trellisd, and what the generator's
// in-process benchmark (internal/trellisd) parses, so both measure the same
// mesh. Everything is in namespace Namespace.
package mesh
