package cli

import (
	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/install"
)

func newManifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Render the Kubernetes manifests of an installation",
		Args:  cobra.NoArgs,
	}
	var inst installFlags
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print the manifests `trellis install` would apply, for kubectl apply/delete -f -",
		Example: "  trellis manifest generate --set profile=demo > trellis.yaml\n" +
			"  trellis manifest generate --set profile=demo | kubectl delete -f -",
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
			y, err := install.YAML(comps)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	inst.add(gen)
	cmd.AddCommand(gen)
	return cmd
}
