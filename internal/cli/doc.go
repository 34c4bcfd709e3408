// Package cli is the `trellis` command line (Istio's istioctl). Root builds
// the whole command tree from each subcommand's constructor (newXCmd, one
// file per subcommand; proxy-config's resources in proxyconfig_*.go);
// subcommands talk to trellisd and proxies over their HTTP APIs and never
// import the proxy's internals.
package cli
