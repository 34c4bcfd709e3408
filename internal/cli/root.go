package cli

import (
	"github.com/spf13/cobra"
)

// Root returns the `trellis` command with its whole command tree: every
// subcommand is listed here, in the order help shows them.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Trellis service mesh command line",
		Long:          "trellis installs, inspects and demonstrates the Trellis service mesh. It accepts Istio's configuration unchanged.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newAnalyzeCmd(),
		newAuthzCmd(),
		newCreateRemoteSecretCmd(),
		newDashboardCmd(),
		newDemoCmd(),
		newDemoappCmd(),
		newExplainCmd(),
		newInstallCmd(),
		newKubeInjectCmd(),
		newLocalCmd(),
		newManifestCmd(),
		newProfileCmd(),
		newProxyConfigCmd(),
		newProxyStatusCmd(),
		newShiftCmd(),
		newUninstallCmd(),
		newVersionCmd(),
	)
	return root
}
