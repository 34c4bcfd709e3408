package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/local"
)

// newLocalCmd is `trellis local`: run your own services in a local mesh
// (network namespaces, interception, trellisd watching a config dir).
func newLocalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run your own workloads in a local mesh on this machine (no Kubernetes)",
	}
	cmd.AddCommand(newLocalUpCmd(), newLocalDownCmd(), newLocalStatusCmd(), newLocalExecCmd(), newLocalFromPodCmd())
	return cmd
}

type localFlags struct {
	prefix, stateDir string
}

func (l *localFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.prefix, "prefix", "trellis", "name prefix of the namespaces, veths and bridge (at most 8 characters)")
	cmd.Flags().StringVar(&l.stateDir, "state-dir", "", "where the state file and logs are (default /run/trellis as root)")
}

func newLocalUpCmd() *cobra.Command {
	var (
		lf                localFlags
		file, binDir, dir string
		subnet, vipSubnet string
	)
	cmd := &cobra.Command{
		Use:   "up -f WORKLOADS.yaml",
		Short: "Start trellisd and every workload of the file, each in its own namespace with a sidecar; Ctrl-C tears down",
		Long: "up reads a spec of services and workloads (see internal/local/testdata/billing.yaml), creates a\n" +
			"bridge and one network namespace per workload, installs the interception rules, registers the\n" +
			"workloads with trellisd (ServiceEntry + WorkloadEntry written to --config-dir) and starts\n" +
			"trellis-proxy (uid 1337) and the app (uid 65534) in each. Put your Istio YAML in --config-dir\n" +
			"and trellisd applies it. Mesh names resolve inside the namespaces: run\n" +
			"`trellis local exec WORKLOAD -- curl bill-service:9999`. It runs until Ctrl-C, then removes\n" +
			"everything it created.\n\n" +
			"Upgrading the sidecars: put the new trellis-proxy in --bin-dir and send SIGUSR2 to this process\n" +
			"(`kill -USR2 PID`): each sidecar is hot-restarted in turn from the new binary (the next\n" +
			"--restart-epoch takes the old proxy's listening sockets, warms its config and certificate, then\n" +
			"the old one drains and exits), without refusing or failing a request.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f: required, the workloads spec file")
			}
			spec, err := local.LoadSpec(file)
			if err != nil {
				return err
			}
			bins, err := local.FindBinaries(binDir)
			if err != nil {
				return err
			}
			bins, unstage, err := bins.Stage(lf.stateDir, lf.prefix)
			if err != nil {
				return err
			}
			defer unstage()
			spec.ExpandCommand(bins.Trellis)
			opts := local.Options{Prefix: lf.prefix}
			for _, f := range []struct {
				name, v string
				p       *netip.Prefix
			}{{"--subnet", subnet, &opts.Subnet}, {"--vip-subnet", vipSubnet, &opts.VIPSubnet}} {
				if f.v == "" {
					continue
				}
				if *f.p, err = netip.ParsePrefix(f.v); err != nil {
					return fmt.Errorf("%s: %w", f.name, err)
				}
			}
			plan, err := local.NewPlan(spec, opts)
			if err != nil {
				return err
			}
			ownDir := dir == ""
			if ownDir {
				dir = filepath.Join(local.StateDir(lf.stateDir), "config-"+lf.prefix)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			r := bins.MeshRunner(plan, dir, lf.stateDir, out)
			ctx := cmd.Context()
			m, err := r.Up(ctx)
			if err != nil {
				return err
			}
			if ownDir {
				if err := m.TrackFile(dir); err != nil {
					return err
				}
			}
			defer func() {
				fmt.Fprintln(out, "tearing down")
				if err := m.Down(context.Background()); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "teardown:", err)
				}
			}()
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = m.WaitReady(wctx)
			cancel()
			if err != nil {
				return err
			}
			printWorkloads(out, m.Plan)
			fmt.Fprintf(out, "config dir: %s (add your Istio YAML here)\ndashboard: %s\nready; Ctrl-C to stop, kill -USR2 %d to upgrade the sidecars from %s\n",
				dir, local.DashboardURL(m.Plan.HostIP.String()), os.Getpid(), filepath.Dir(bins.Proxy))
			upgrade := make(chan os.Signal, 1)
			signal.Notify(upgrade, syscall.SIGUSR2)
			defer signal.Stop(upgrade)
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-upgrade:
					upgradeSidecars(ctx, out, m, binDir, lf)
				}
			}
		},
	}
	lf.add(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "workloads spec file (services and workloads with their commands)")
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory holding trellis, trellisd and trellis-proxy")
	cmd.Flags().StringVar(&dir, "config-dir", "", "directory trellisd watches (default STATE-DIR/config-PREFIX)")
	cmd.Flags().StringVar(&subnet, "subnet", "", "the workloads' subnet, the bridge on its first address (default 10.244.0.0/24)")
	cmd.Flags().StringVar(&vipSubnet, "vip-subnet", "", "the services' virtual IPs (default 10.245.0.0/24)")
	return cmd
}

// localHotDrain bounds how long an old sidecar drains during a local
// upgrade (it exits as soon as its last connection closes).
const localHotDrain = 5 * time.Second

// upgradeSidecars hot-restarts every sidecar Up started, one after the
// other, from the trellis-proxy now in binDir (staged again when other
// users cannot run it there). A sidecar that fails to take over leaves
// the old one serving.
func upgradeSidecars(ctx context.Context, out io.Writer, m *local.Mesh, binDir string, lf localFlags) {
	bins, err := local.FindBinaries(binDir)
	if err == nil {
		bins, _, err = bins.Stage(lf.stateDir, lf.prefix)
	}
	if err != nil {
		fmt.Fprintf(out, "upgrade: %v\n", err)
		return
	}
	fmt.Fprintf(out, "upgrading the sidecars to %s\n", bins.Proxy)
	n := 0
	for _, w := range m.Plan.Workloads {
		if w.Pod != nil {
			continue // a pod's proxy is upgraded by starting the pod again
		}
		t0 := time.Now()
		cmd, err := m.HotRestartProxy(ctx, w.Name, local.HotRestart{Binary: bins.Proxy, DrainTime: localHotDrain, ParentShutdownTime: 2 * localHotDrain})
		if err != nil {
			fmt.Fprintf(out, "upgrade: %v\n", err)
			continue
		}
		n++
		fmt.Fprintf(out, "sidecar of %s: now pid %d; the old one drained and exited in %s\n", w.Name, cmd.Process.Pid, time.Since(t0).Round(time.Millisecond))
	}
	fmt.Fprintf(out, "upgraded %d sidecars\n", n)
}

func printWorkloads(w interface{ Write([]byte) (int, error) }, p *local.Plan) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tNAMESPACE\tNETNS\tIP\tPORTS")
	for _, wl := range p.Workloads {
		var ports []string
		for _, port := range wl.InboundPorts {
			ports = append(ports, fmt.Sprint(port))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", wl.Name, wl.Namespace, wl.Netns, wl.IP, strings.Join(ports, ","))
	}
	fmt.Fprintln(tw, "\nSERVICE\tVIP\tHOSTS")
	for _, s := range p.Services {
		fmt.Fprintf(tw, "%s.%s\t%s\t%s\n", s.Name, s.Namespace, s.VIP, s.FQDN)
	}
	tw.Flush()
}

func newLocalDownCmd() *cobra.Command {
	var lf localFlags
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a local mesh (or the leftovers of a crashed one): processes, namespaces, links, files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("removing network namespaces needs root; run it as root (with sudo from another account)")
			}
			return local.Cleanup(cmd.Context(), local.StatePath(lf.stateDir, lf.prefix), lf.prefix, cmd.OutOrStdout())
		},
	}
	lf.add(cmd)
	return cmd
}

func newLocalStatusCmd() *cobra.Command {
	var lf localFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the workloads of a running local mesh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := local.StatePath(lf.stateDir, lf.prefix)
			st, err := local.ReadState(path)
			if err != nil {
				return err
			}
			if st == nil {
				return fmt.Errorf("no local mesh with prefix %q (no %s)", lf.prefix, path)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "xDS: %s\n\nWORKLOAD\tNAMESPACE\tNETNS\tIP\tNODE ID\n", st.XDSAddress)
			for _, w := range st.Workloads {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.Name, w.Namespace, w.Netns, w.IP, w.NodeID)
			}
			return tw.Flush()
		},
	}
	lf.add(cmd)
	return cmd
}

func newLocalExecCmd() *cobra.Command {
	var (
		lf  localFlags
		uid int
	)
	cmd := &cobra.Command{
		Use:     "exec WORKLOAD -- COMMAND [ARGS...]",
		Short:   "Run a command inside a workload's namespace as its app user (its traffic goes through the sidecar)",
		Example: "  trellis local exec front-tomcat-v1 -- curl -s bill-service:9999",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := local.ReadState(local.StatePath(lf.stateDir, lf.prefix))
			if err != nil {
				return err
			}
			if st == nil {
				return fmt.Errorf("no local mesh with prefix %q is running", lf.prefix)
			}
			for _, w := range st.Workloads {
				if w.Name == args[0] {
					return local.ExecIn(cmd.Context(), w.Netns, uid, args[1:], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
				}
			}
			return fmt.Errorf("no workload %q; see `trellis local status`", args[0])
		},
	}
	lf.add(cmd)
	cmd.Flags().IntVar(&uid, "uid", 65534, "user to run as (1337 runs as the proxy: not intercepted)")
	return cmd
}

// newLocalFromPodCmd is `trellis local from-pod`: an injected pod as a
// local workload, run the way a kubelet runs it.
func newLocalFromPodCmd() *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:   "from-pod -f INJECTED.yaml",
		Short: "Write a workloads spec that runs injected pods (trellis kube-inject output) as a kubelet would",
		Long: "from-pod reads Kubernetes YAML that trellis kube-inject produced and writes a spec for\n" +
			"`trellis local up -f`: each Pod, Job or Deployment pod template becomes a workload whose\n" +
			"istio-init flags install the interception rules, whose istio-proxy runs with the pod's own\n" +
			"arguments and is waited for (native sidecar startup probe, or the fallback postStart hook)\n" +
			"before the app starts; a Job's workload ends when its app exits, its proxy stopped then.\n" +
			"Services become services. The app container's command runs on this host.",
		Example: "  trellis kube-inject -f job.yaml | trellis local from-pod -f - > workloads.yaml\n" +
			"  sudo trellis local up -f workloads.yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return fmt.Errorf("-f: required, the injected YAML (or - for stdin)")
			}
			r := cmd.InOrStdin()
			if in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			spec, err := local.FromPod(r)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			b, err := yaml.Marshal(spec)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	cmd.Flags().StringVarP(&in, "filename", "f", "", "injected Kubernetes YAML, or - for stdin")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the spec to this file instead of stdout")
	return cmd
}
