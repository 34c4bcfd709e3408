package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/shift"
)

func newShiftCmd() *cobra.Command {
	var (
		prometheus, query, vs       string
		destService, sourceWorkload string
		burstSubset, naturalSubset  string
		configDir                   string
		up, down                    float64
		interval, window            time.Duration
		useKube, verbose            bool
		cluster                     clusterFlags
	)
	cmd := &cobra.Command{
		Use:   "shift",
		Short: "Shift a VirtualService's traffic between two subsets by request rate",
		Long: `shift is the burst controller: every --interval it asks Prometheus for the
request rate to a service and, with hysteresis, routes 100 % of the
VirtualService's HTTP traffic to --burst-subset when the rate goes above --up
and back to --natural-subset when it falls below --down (nothing changes in
between). It edits the YAML in trellisd's --config-dir (local mode) or the
object in the cluster (--kube), and runs until interrupted.`,
		Example: `  trellis shift --prometheus http://127.0.0.1:9090 --virtual-service default/worker-virtual-service \
    --burst-subset burst --natural-subset primary --up 15 --down 10 --config-dir ./mesh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, err := shift.ParseRef(vs)
			if err != nil {
				return fmt.Errorf("--virtual-service: %w", err)
			}
			var applier shift.Applier
			switch {
			case useKube && configDir != "":
				return errors.New("--config-dir and --kube: pick one (files of a local trellisd, or the cluster)")
			case useKube:
				c, err := cluster.connect()
				if err != nil {
					return err
				}
				applier = &shift.KubeApplier{Client: c.Dynamic}
			case configDir != "":
				if st, err := os.Stat(configDir); err != nil || !st.IsDir() {
					return fmt.Errorf("--config-dir %q: not a directory (the directory trellisd --config-dir reads)", configDir)
				}
				applier = &shift.FileApplier{Dir: configDir}
			default:
				return errors.New("where is the VirtualService? pass --config-dir DIR (local trellisd) or --kube")
			}
			if query == "" {
				query = shift.DefaultQuery(destService, sourceWorkload, window)
			}
			sampler, err := shift.NewPrometheusSampler(prometheus, query)
			if err != nil {
				return fmt.Errorf("--prometheus: %w", err)
			}
			out := cmd.OutOrStdout()
			ctrl, err := shift.New(shift.Options{
				Sampler: sampler, Up: up, Down: down, Interval: interval,
				VirtualService: ref, BurstSubset: burstSubset, NaturalSubset: naturalSubset,
				Applier: applier,
				OnDecision: func(d shift.Decision) {
					if d.Changed || d.Err != nil || verbose {
						fmt.Fprintf(out, "%s %s\n", d.Time.Format(time.TimeOnly), d)
					}
				},
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "watching %s every %s: burst (%s) above %g req/s, natural (%s) below %g req/s\nquery: %s\n",
				ref, interval, burstSubset, up, naturalSubset, down, query)
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return ctrl.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prometheus, "prometheus", "http://127.0.0.1:9090", "Prometheus base URL")
	f.StringVar(&query, "query", "", "PromQL giving the rate in req/s (default built from --destination-service, --source-workload and --window)")
	f.StringVar(&destService, "destination-service", "worker-service.default.svc.cluster.local", "destination_service label of istio_requests_total")
	f.StringVar(&sourceWorkload, "source-workload", "frontend-deployment", "source_workload label of istio_requests_total")
	f.DurationVar(&window, "window", time.Minute, "rate() window of the default query")
	f.StringVar(&vs, "virtual-service", "default/worker-virtual-service", "VirtualService to rewrite, namespace/name")
	f.StringVar(&burstSubset, "burst-subset", "burst", "subset that gets 100 % above --up")
	f.StringVar(&naturalSubset, "natural-subset", "primary", "subset that gets 100 % below --down")
	f.Float64Var(&up, "up", 15, "shift to burst when the rate is above this (req/s)")
	f.Float64Var(&down, "down", 10, "shift back to natural when the rate is below this (req/s)")
	f.DurationVar(&interval, "interval", time.Second, "time between Prometheus queries")
	f.StringVar(&configDir, "config-dir", "", "rewrite the VirtualService in the YAML files of this directory (trellisd --config-dir)")
	f.BoolVar(&useKube, "kube", false, "rewrite the VirtualService in the Kubernetes cluster")
	f.BoolVarP(&verbose, "verbose", "v", false, "print every sample, not only the shifts")
	cluster.add(cmd)
	return cmd
}

// cmdContext is the command's context, or Background when run without one.
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
