package cli

import (
	"errors"
	"io"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
)

// runBootstrap is `proxy-config bootstrap`: the bootstrap section of the
// config dump, as JSON unless -o yaml.
func runBootstrap(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	if d.bootstrap == nil {
		return errors.New("the config dump has no bootstrap")
	}
	format := f.output
	if format == "short" {
		format = "json"
	}
	if err := printProtos(w, format, []*adminv3.BootstrapConfigDump{d.bootstrap}); err != nil {
		return err
	}
	return nil
}
