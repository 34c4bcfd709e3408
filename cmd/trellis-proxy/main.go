// Command trellis-proxy is Trellis's data plane: Envoy and pilot-agent in
// one process. It runs from an Envoy bootstrap file (-c) or from flags and
// environment (like a sidecar), consumes xDS and proxies traffic.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/proxy"
	"github.com/trellis-mesh/trellis/internal/proxy/admin"
	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"github.com/trellis-mesh/trellis/internal/proxy/xdsclient"
	"github.com/trellis-mesh/trellis/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	env := bootstrap.OptionsFromEnv(os.Getenv, os.Environ())
	if v := os.Getenv("TRELLIS_XDS_ADDRESS"); v != "" {
		env.XDSAddress = v
	}
	if env.ServiceAccount == "" {
		env.ServiceAccount = os.Getenv("TRELLIS_SERVICE_ACCOUNT") // local mode
	}
	var (
		o        proxy.Options
		labels   []string
		metadata []string
		vhds     bool
		rebind   []string
		ca       caFlags
		hot      hotRestartFlags
	)
	o.Node = env
	cmd := &cobra.Command{
		Use:   "trellis-proxy",
		Short: "Trellis data plane proxy (Envoy-compatible xDS consumer)",
		Long: "trellis-proxy proxies a workload's traffic (sidecar) or a gateway's (router).\n" +
			"With -c it starts from an Envoy bootstrap file (static listeners and clusters and/or an ADS server);\n" +
			"otherwise it builds the bootstrap from flags and the sidecar environment (POD_NAME, POD_NAMESPACE,\n" +
			"INSTANCE_IP, ISTIO_META_*, TRELLIS_XDS_ADDRESS) and connects to trellisd over ADS (Delta by default).",
		Example: "  trellis-proxy -c bootstrap.yaml\n" +
			"  trellis-proxy --xds-address 127.0.0.1:15010 --type sidecar --ip 10.0.0.5 --pod-name web-1 --namespace shop --labels app=web,version=v1\n" +
			"  trellis-proxy -c hop.yaml --rebind 0.0.0.0:15006=127.0.0.1:25006\n" +
			"  trellis-proxy ... --restart-epoch 0     # first start, hot-restartable\n" +
			"  trellis-proxy ... --restart-epoch 1     # takes over the sockets of epoch 0, which drains and exits",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Node.Labels, err = keyValues(labels, "--labels"); err != nil {
				return err
			}
			md, err := keyValues(metadata, "--metadata")
			if err != nil {
				return err
			}
			for k, v := range md {
				if o.Node.Metadata == nil {
					o.Node.Metadata = map[string]string{}
				}
				o.Node.Metadata[k] = v
			}
			// VHDS is the default on Delta ADS; --sotw and -c turn it off
			// unless --vhds is given too, which is then an error.
			if explicit := cmd.Flags().Changed("vhds"); vhds && explicit {
				switch {
				case o.Node.SotW:
					return fmt.Errorf("--vhds: virtual host discovery needs Delta ADS; drop --sotw or --vhds")
				case o.ConfigPath != "":
					return fmt.Errorf("--vhds: with -c the node comes from the bootstrap file; set node.metadata.%s: \"true\" there", xdsclient.VHDSMetadataKey)
				}
			}
			if _, set := md[xdsclient.VHDSMetadataKey]; vhds && !set && !o.Node.SotW && o.ConfigPath == "" {
				if o.Node.Metadata == nil {
					o.Node.Metadata = map[string]string{}
				}
				o.Node.Metadata[xdsclient.VHDSMetadataKey] = "true"
			}
			if o.Rebind, err = keyValues(rebind, "--rebind"); err != nil {
				return err
			}
			if o.ConfigPath != "" {
				// With a bootstrap file only its admin address is served,
				// like Envoy, unless the flags ask for more.
				for _, f := range []struct {
					name string
					v    *string
				}{{"ready-address", &o.ReadyAddress}, {"prometheus-address", &o.PrometheusAddress}, {"merged-address", &o.MergedAddress}} {
					if !cmd.Flags().Changed(f.name) {
						*f.v = ""
					}
				}
			}
			if o.Node.Version == "" {
				o.Node.Version = version.Version
			}
			switch strings.ToLower(o.LogLevel) {
			case "", "trace", "debug", "info", "warning", "warn", "error", "critical", "off":
			default:
				return fmt.Errorf("--log-level: %q is not one of trace, debug, info, warning, error, critical, off", o.LogLevel)
			}
			if o.Identity, err = ca.options(o.Node); err != nil {
				return err
			}
			if o.HotRestart, err = hot.options(cmd.Flags()); err != nil {
				return err
			}
			return proxy.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config-path", "c", "", "Envoy bootstrap file (YAML or JSON); when empty the bootstrap is built from flags and environment")
	f.StringVar(&o.Node.XDSAddress, "xds-address", env.XDSAddress, "ADS server address (env TRELLIS_XDS_ADDRESS, XDS_ADDRESS); default 127.0.0.1:15010")
	f.BoolVar(&o.Node.SotW, "sotw", false, "use State-of-the-World ADS instead of Delta")
	f.BoolVar(&vhds, "vhds", true, "ask for route configurations' virtual hosts over VHDS (Delta ADS), so an edit sends only the virtual hosts it changed (node metadata "+xdsclient.VHDSMetadataKey+"=true); off with --sotw or -c, --vhds=false for whole route tables")
	f.StringVar(&o.Node.Type, "type", "sidecar", "proxy type: sidecar or router (gateway)")
	f.StringVar(&o.Node.NodeID, "id", "", "node id; default TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local")
	f.StringVar(&o.Node.NodeID, "node-id", "", "alias of --id")
	f.StringVar(&o.Node.IP, "ip", env.IP, "workload IP (env INSTANCE_IP)")
	f.StringVar(&o.Node.PodName, "pod-name", env.PodName, "pod (workload instance) name (env POD_NAME)")
	f.StringVar(&o.Node.Namespace, "namespace", env.Namespace, "namespace (env POD_NAMESPACE); default default")
	f.StringVar(&o.Node.Cluster, "service-cluster", "", "node.cluster, e.g. app.namespace")
	f.StringVar(&o.Node.WorkloadName, "workload-name", env.WorkloadName, "workload name (env ISTIO_META_WORKLOAD_NAME)")
	f.StringVar(&o.Node.ServiceAccount, "service-account", env.ServiceAccount, "service account (env SERVICE_ACCOUNT)")
	f.StringSliceVar(&labels, "labels", nil, "workload labels, k=v,k=v")
	f.StringSliceVar(&metadata, "metadata", nil, "extra node metadata, k=v,k=v")
	f.StringVar(&o.Node.AdminAddress, "admin-address", "127.0.0.1:15000", "admin listener address (with -c the bootstrap's admin wins)")
	f.StringVar(&o.ReadyAddress, "ready-address", "0.0.0.0:15021", "health endpoint /healthz/ready (empty: off; off by default with -c)")
	f.StringVar(&o.PrometheusAddress, "prometheus-address", "0.0.0.0:15090", "Prometheus endpoint /stats/prometheus (empty: off; off by default with -c)")
	f.StringVar(&o.MergedAddress, "merged-address", "0.0.0.0:15020", "merged proxy + app metrics (empty: off; off by default with -c)")
	f.StringVar(&o.AppMetricsURL, "app-metrics-url", "", "the application's Prometheus endpoint merged on --merged-address")
	f.StringVar(&o.AppProbers, "app-probers", os.Getenv(admin.EnvAppProbers), "the application probes served on --merged-address as /app-health/CONTAINER/KIND, Istio's JSON (env "+admin.EnvAppProbers+", set by the injector)")
	f.IntVar(&o.Concurrency, "concurrency", 0, "worker threads (GOMAXPROCS); 0 keeps the Go default")
	f.DurationVar(&o.DrainDuration, "drain-duration", 5*time.Second, "how long SIGTERM lets in-flight requests finish")
	f.StringVar(&o.LogLevel, "log-level", "info", "log level: trace, debug, info, warning, error, critical, off")
	f.StringSliceVar(&rebind, "rebind", nil, "bind a configured listener address elsewhere, from=to (e.g. 0.0.0.0:15006=127.0.0.1:25006); lets several proxies share one host without interception")
	ca.register(f)
	hot.register(f)
	cmd.AddCommand(iptablesCommand(), waitCommand())
	return cmd
}

// keyValues parses k=v items.
func keyValues(items []string, flag string) (map[string]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", flag, it)
		}
		m[k] = v
	}
	return m, nil
}
