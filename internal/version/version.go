// Package version holds the Trellis version, set at build time:
//
//	go build -ldflags "-X github.com/trellis-mesh/trellis/internal/version.Version=1.2.3" ./cmd/...
//
// All three programs report it (the CLI's `trellis version`, trellisd's
// debug endpoints, and the proxy's ISTIO_VERSION node metadata).
package version

// Version is the Trellis release; "0.1.0-dev" for development builds.
var Version = "0.1.0-dev"
