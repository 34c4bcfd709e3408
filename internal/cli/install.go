package cli

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/version"
)

func newInstallCmd() *cobra.Command {
	var (
		inst    installFlags
		cluster clusterFlags
		yes     bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Trellis into a Kubernetes cluster (server-side apply, idempotent)",
		Long: "install applies the manifests of a profile (default, demo, minimal, empty, remote) with your\n" +
			"overrides: the Istio CRDs, the trellis-system namespace, RBAC, trellisd, the injection and\n" +
			"validation webhooks, and the ingress/egress gateways (labelled istio: ingressgateway /\n" +
			"istio: egressgateway). Running it again with the same settings changes nothing.",
		Example: "  trellis install --set profile=demo -y\n" +
			"  trellis install --set values.global.proxy.includeIPRanges=10.96.0.0/12 --set meshConfig.accessLogFile=/dev/stdout\n" +
			"  trellis install -f overrides.yaml --wait=false",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := inst.settings()
			if err != nil {
				return err
			}
			comps, err := install.Render(s)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(comps) == 0 {
				fmt.Fprintf(out, "Profile %q installs nothing.\n", s.Profile)
				return nil
			}
			if !yes {
				fmt.Fprintf(out, "This will install the Trellis %s %q profile into the cluster. Proceed? (y/N) ", version.Version, s.Profile)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return fmt.Errorf("install cancelled")
				}
			}
			c, err := cluster.connect()
			if err != nil {
				return err
			}
			if err := install.Apply(cmd.Context(), c, comps, install.ApplyOptions{Out: out, Wait: wait, Timeout: timeout}); err != nil {
				return err
			}
			if s.Components.Pilot.Enabled {
				fmt.Fprintln(out, "Making this installation the default for injection and validation.")
			}
			return nil
		},
	}
	inst.add(cmd)
	cluster.add(cmd)
	cmd.Flags().BoolVarP(&yes, "skip-confirmation", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait for the Deployments to become available, saying what is awaited")
	cmd.Flags().DurationVar(&timeout, "readiness-timeout", 5*time.Minute, "how long to wait for readiness")
	return cmd
}
