package cli

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/install"
)

func newUninstallCmd() *cobra.Command {
	var (
		inst    installFlags
		cluster clusterFlags
		yes     bool
		purge   bool
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove Trellis from a Kubernetes cluster",
		Long: "uninstall deletes what install created for the given settings (the CRDs stay, so your Istio\n" +
			"objects survive). With --purge it deletes everything labelled app.kubernetes.io/managed-by=trellis,\n" +
			"including the CRDs and therefore every Istio object in the cluster.",
		Example: "  trellis uninstall --purge -y\n  trellis uninstall --set profile=demo",
		Args:    cobra.NoArgs,
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
			if !yes {
				what := "the " + s.Profile + " profile's objects (CRDs kept)"
				if purge {
					what = "every Trellis object, the Istio CRDs and all Istio configuration"
				}
				fmt.Fprintf(out, "This will remove %s from the cluster. Proceed? (y/N) ", what)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return fmt.Errorf("uninstall cancelled")
				}
			}
			c, err := cluster.connect()
			if err != nil {
				return err
			}
			return install.Uninstall(cmd.Context(), c, comps, install.UninstallOptions{Out: out, Purge: purge})
		},
	}
	inst.add(cmd)
	cluster.add(cmd)
	cmd.Flags().BoolVarP(&yes, "skip-confirmation", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&purge, "purge", false, "remove everything Trellis installed, CRDs included")
	return cmd
}
