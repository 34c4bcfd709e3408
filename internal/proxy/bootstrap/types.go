package bootstrap

// The typed configs inside a bootstrap file (and inside the xDS resources
// and /config_dump of the proxy that links this package) resolve through
// the contract's one list of extension types.
import _ "github.com/trellis-mesh/trellis/internal/envoyext"
