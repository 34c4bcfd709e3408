package cli

import (
	"sort"

	"github.com/spf13/cobra"
)

var constructors []func() *cobra.Command

// register adds a subcommand constructor; called from init functions.
func register(f func() *cobra.Command) { constructors = append(constructors, f) }

// Root returns the `trellis` command with every registered subcommand.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Trellis service mesh command line",
		Long:          "trellis installs, inspects and demonstrates the Trellis service mesh. It accepts Istio's configuration unchanged.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cmds []*cobra.Command
	for _, f := range constructors {
		cmds = append(cmds, f())
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	return root
}
