package cli

import (
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/demo"
)

// newDemoCmd is `trellis demo`: the seeds' bill-service and canary
// scenarios in a local mesh, measured and torn down, in one command.
func newDemoCmd() *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the bill-service and canary scenarios in a local mesh and show what the mesh does",
		Long: "demo starts trellisd and the workloads of the bill-service (seed 000) and canary (seed 002)\n" +
			"scenarios, each in its own network namespace with a trellis-proxy sidecar and iptables\n" +
			"interception, then shows: the even split without rules, 90/10 after destination-rule.yaml +\n" +
			"virtual-service.yaml, the `user: jesse` header route, the delay and abort faults, and the\n" +
			"even split again once the VirtualService is deleted. Every step prints a table of who\n" +
			"answered and how fast. Everything is removed on exit or Ctrl-C, and a re-run removes the\n" +
			"leftovers of a crashed one. Needs root; without it the same scenarios run with explicit\n" +
			"proxy ports on 127.0.0.1.",
		Example: "  trellis demo                   # as root\n  trellis demo --calls 200 --keep",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			_, err := demo.Run(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BinDir, "bin-dir", "", "directory holding trellis, trellisd and trellis-proxy (default: next to this program, then PATH)")
	f.IntVar(&o.Calls, "calls", 1000, "calls per measured step")
	f.IntVar(&o.DelayCalls, "delay-calls", 10, "concurrent calls that measure the 5 s delay fault")
	f.BoolVar(&o.Keep, "keep", false, "leave the mesh running afterwards (remove it with: trellis local down)")
	f.BoolVar(&o.NoIntercept, "no-intercept", false, "no namespaces or iptables: explicit proxy ports on 127.0.0.1")
	f.StringVar(&o.Prefix, "prefix", "trellis", "name prefix of the namespaces, veths and bridge created (at most 8 characters)")
	f.StringVar(&o.StateDir, "state-dir", "", "where the state file and logs go (default /run/trellis as root)")
	f.StringVar(&o.JSON, "json", "", "also write the measurements and checks as JSON to this file")
	f.Var(prefixValue{&o.Subnet}, "subnet", "IPv4 subnet of the bridge and workloads (default 10.244.0.0/24)")
	f.Var(prefixValue{&o.VIPSubnet}, "vip-subnet", "IPv4 subnet of the service VIPs (default 10.245.0.0/24)")
	return cmd
}

// prefixValue is a pflag.Value for a CIDR.
type prefixValue struct{ p *netip.Prefix }

func (v prefixValue) String() string {
	if v.p == nil || !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}

func (v prefixValue) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return err
	}
	*v.p = p
	return nil
}

func (prefixValue) Type() string { return "cidr" }
