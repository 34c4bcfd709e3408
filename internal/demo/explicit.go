package demo

import (
	"context"
	"errors"
)

// upExplicit would run the scenarios without namespaces: apps and one
// front-end proxy on 127.0.0.1 with explicit ports.
func (d *demo) upExplicit(ctx context.Context) (func() bool, error) {
	return nil, errors.New("running without interception is not available yet: run `sudo trellis demo` (root is needed for network namespaces and iptables)")
}
