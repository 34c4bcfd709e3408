package cli

// The typed configs inside a proxy's /config_dump resolve through the xDS
// contract's one list of extension types.
import _ "github.com/trellis-mesh/trellis/internal/envoyext"
