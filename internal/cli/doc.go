// Package cli is the `trellis` command line (Istio's istioctl). Each
// subcommand lives in its own file and registers itself with register in an
// init function; subcommands talk to trellisd and proxies over their HTTP
// APIs and never import the proxy's internals.
package cli
