package cli

import (
	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
)

// clusterFlags are the kubectl-style connection flags of the Kubernetes
// commands (install, uninstall, version).
type clusterFlags struct {
	kubeconfig string
	context    string
}

func (f *clusterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.kubeconfig, "kubeconfig", "c", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVar(&f.context, "context", "", "kubeconfig context (default the current one)")
}

func (f *clusterFlags) connect() (*kube.Clients, error) { return kube.Connect(f.kubeconfig, f.context) }

// installFlags are the profile/values flags shared by install, manifest
// generate, profile dump, uninstall and kube-inject.
type installFlags struct {
	files []string
	set   []string
}

func (f *installFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, "IstioOperator-style YAML overlay (spec.profile, components, meshConfig, values); repeatable")
	cmd.Flags().StringArrayVarP(&f.set, "set", "s", nil, "override one setting, path relative to spec, e.g. --set profile=demo --set values.global.proxy.includeIPRanges=10.0.0.0/8; repeatable")
}

func (f *installFlags) settings() (*install.Settings, error) {
	return install.Load(install.Options{Files: f.files, Set: f.set})
}
