package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/iptables"
)

// iptablesCommand is `trellis-proxy iptables`, the sidecar's init step
// (Istio's istio-iptables): it installs the nat rules that send the
// workload's TCP through the proxy. The short flags are istio-iptables'.
func iptablesCommand() *cobra.Command {
	o := iptables.DefaultOptions()
	var (
		inbound, exInbound, inIP, exIP, inOut, exOut string
		mode, interception                           string
		dryRun, cleanup                              bool
	)
	cmd := &cobra.Command{
		Use:   "iptables",
		Short: "Install (or --cleanup) the nat rules that redirect a workload's TCP through the proxy",
		Long: "iptables installs Istio's interception rules in the nat table of the current network namespace:\n" +
			"outbound TCP to --proxy-port (15001), inbound TCP to --inbound-capture-port (15006), traffic of\n" +
			"the proxy's uid/gid (1337) exempt, inbound 15008/15020/15021/15090 not captured.\n" +
			"Re-running replaces the rules; --cleanup removes exactly what was added; --dry-run prints them.",
		Example: "  trellis-proxy iptables --dry-run\n" +
			"  trellis-proxy iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*' -d 15090,15021,15020\n" +
			"  trellis-proxy iptables --include-outbound-ip-ranges 10.96.0.0/12 --exclude-inbound-ports 22\n" +
			"  trellis-proxy iptables --cleanup",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if m := strings.ToUpper(strings.TrimSpace(interception)); m != "REDIRECT" {
				return fmt.Errorf("--interception-mode: got %q, want REDIRECT (TPROXY is not supported yet)", interception)
			}
			o.InboundPorts = []string{inbound}
			o.ExcludeInboundPorts = []string{exInbound}
			o.IncludeOutboundIPRanges = []string{inIP}
			o.ExcludeOutboundIPRanges = []string{exIP}
			o.IncludeOutboundPorts = []string{inOut}
			o.ExcludeOutboundPorts = []string{exOut}
			m, err := iptables.ParseMode(mode)
			if err != nil {
				return err
			}
			a := &iptables.Applier{Runner: iptables.ExecRunner{}, Mode: m}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			switch {
			case cleanup && dryRun:
				b, err := a.Detect(ctx)
				if err != nil {
					return err
				}
				save, err := a.Runner.Run(ctx, "", b.Save, "-t", iptables.Table)
				if err != nil {
					return fmt.Errorf("read nat rules: %w: %s", err, strings.TrimSpace(save))
				}
				script := iptables.CleanupScript(save)
				if script == "" {
					script = "# no Trellis rules to remove\n"
				}
				fmt.Fprint(out, script)
				return nil
			case cleanup:
				return a.Cleanup(ctx)
			case dryRun:
				rs, err := iptables.Rules(o)
				if err != nil {
					return err
				}
				fmt.Fprint(out, rs.Restore())
				return nil
			}
			return a.Apply(ctx, o)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.ProxyPort, "proxy-port", "p", o.ProxyPort, "port outbound TCP is redirected to (the proxy's virtualOutbound listener)")
	f.IntVarP(&o.InboundCapturePort, "inbound-capture-port", "z", o.InboundCapturePort, "port inbound TCP is redirected to (the proxy's virtualInbound listener)")
	f.StringVarP(&o.ProxyUID, "proxy-uid", "u", o.ProxyUID, "uid(s) of the proxy, comma-separated; their traffic is not redirected")
	f.StringVarP(&o.ProxyGID, "proxy-gid", "g", o.ProxyGID, "gid(s) of the proxy, comma-separated; their traffic is not redirected")
	f.StringVarP(&inbound, "include-inbound-ports", "b", "*", "inbound ports to capture: '*' for all, a comma-separated list, or '' for none (proxy.includeInboundPorts)")
	f.StringVarP(&exInbound, "exclude-inbound-ports", "d", strings.Join(iptables.DefaultExcludeInboundPorts, ","), "inbound ports never captured when --include-inbound-ports is '*' (proxy.excludeInboundPorts); 15008 is always excluded")
	f.StringVarP(&inIP, "include-outbound-ip-ranges", "i", "*", "outbound destination CIDRs to capture: '*' for all, a comma-separated list, or '' for none (proxy.includeIPRanges)")
	f.StringVarP(&exIP, "exclude-outbound-ip-ranges", "x", "", "outbound destination CIDRs never captured (proxy.excludeIPRanges)")
	f.StringVarP(&inOut, "include-outbound-ports", "q", "", "outbound ports captured whatever the destination IP")
	f.StringVarP(&exOut, "exclude-outbound-ports", "o", "", "outbound ports never captured")
	f.StringVarP(&interception, "interception-mode", "m", "REDIRECT", "interception mode; only REDIRECT is supported")
	f.StringVar(&mode, "iptables-mode", "auto", "iptables backend: auto (the one iptables --version reports), nft or legacy")
	f.BoolVarP(&dryRun, "dry-run", "n", false, "print the iptables-restore input instead of applying it (with --cleanup: print what would be removed)")
	f.BoolVar(&cleanup, "cleanup", false, "remove the rules and ISTIO_* chains added earlier, leaving every other rule as it was")
	return cmd
}
