package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/install"
)

func newProfileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "List and show installation profiles",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "Trellis configuration profiles:")
			for _, p := range install.Profiles() {
				fmt.Fprintf(out, "    %s\n", p)
			}
			return nil
		},
	})
	var inst installFlags
	dump := &cobra.Command{
		Use:     "dump [profile]",
		Short:   "Print a profile's complete settings (merged with default and any -f/--set)",
		Example: "  trellis profile dump demo\n  trellis profile dump --set values.global.proxy.concurrency=4",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := inst.set
			if len(args) == 1 {
				set = append([]string{"profile=" + args[0]}, set...)
			}
			s, err := install.Load(install.Options{Files: inst.files, Set: set})
			if err != nil {
				return err
			}
			y, err := yaml.Marshal(map[string]any{"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": s})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	inst.add(dump)
	cmd.AddCommand(dump)
	return cmd
}
