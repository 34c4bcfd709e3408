package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
)

func newKubeInjectCmd() *cobra.Command {
	var (
		in, out string
		set     []string
		values  []string
		cfgFile string
		kubeVer string
		native  string
	)
	cmd := &cobra.Command{
		Use:   "kube-inject",
		Short: "Add the Trellis sidecar to Kubernetes YAML, offline",
		Long: "kube-inject reads Kubernetes YAML and adds the sidecar (istio-init + istio-proxy) to every Pod\n" +
			"and workload pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob), as the\n" +
			"injection webhook would, honouring sidecar.istio.io/inject=false and the traffic.sidecar.istio.io/*\n" +
			"annotations. Other objects pass through. The injection settings are the install's (--set, and\n" +
			"--values-file for -f overlays), or the cluster's injector ConfigMap via --injectConfigFile.\n\n" +
			"The proxy's form follows the target cluster's version (--kube-version): on Kubernetes 1.29 and\n" +
			"later a native sidecar (an init container with restartPolicy: Always, started and ready before the\n" +
			"app, stopped after it); before, the first container with a postStart hook holding the app until\n" +
			"the proxy is ready. --native-sidecars=true|false forces one form; the pod annotation\n" +
			"sidecar.istio.io/nativeSidecar overrides both.",
		Example: "  trellis kube-inject -f deployment.yaml | kubectl apply -f -\n" +
			"  kubectl get deploy web -o yaml | trellis kube-inject -f - --set values.global.proxy.excludeIPRanges=169.254.169.254/32\n" +
			"  trellis kube-inject -f job.yaml --kube-version 1.28",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return fmt.Errorf("--filename: required (a file, or - for stdin)")
			}
			var cfg inject.Config
			if cfgFile != "" {
				if len(set)+len(values) > 0 {
					return fmt.Errorf("--injectConfigFile: use it alone, or --set/--values-file, not both")
				}
				c, err := inject.LoadConfig(cfgFile)
				if err != nil {
					return err
				}
				cfg = c
			} else {
				s, err := install.Load(install.Options{Files: values, Set: set})
				if err != nil {
					return err
				}
				cfg = install.InjectConfig(s)
			}
			target, err := inject.ParseKubeVersion(kubeVer)
			if err != nil {
				return fmt.Errorf("--kube-version: %w", err)
			}
			switch native {
			case "":
			case "auto", "true", "false":
				cfg.NativeSidecars = native
			default:
				return fmt.Errorf("--native-sidecars: got %q, want auto, true or false", native)
			}
			var src []byte
			if in == "-" {
				src, err = io.ReadAll(cmd.InOrStdin())
			} else {
				src, err = os.ReadFile(in)
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", in, err)
			}
			res, err := inject.Manifests(cfg, target, src)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(res)
				return err
			}
			return os.WriteFile(out, res, 0o644)
		},
	}
	cmd.Flags().StringVarP(&in, "filename", "f", "", "input YAML file, or - for stdin")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().StringArrayVarP(&set, "set", "s", nil, "install setting affecting injection, e.g. --set values.global.proxy.includeIPRanges=10.0.0.0/8")
	cmd.Flags().StringArrayVar(&values, "values-file", nil, "IstioOperator-style YAML with install settings")
	cmd.Flags().StringVar(&cfgFile, "injectConfigFile", "", "injection config as the cluster holds it: kubectl -n trellis-system get cm trellis-sidecar-injector -o jsonpath='{.data.config}'")
	cmd.Flags().StringVar(&kubeVer, "kube-version", "1.32", "Kubernetes version of the target cluster (MAJOR.MINOR); 1.29 and later get native sidecars")
	cmd.Flags().StringVar(&native, "native-sidecars", "", "auto, true or false: override the injection config's choice of native sidecars")
	return cmd
}
