package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type proxyConfigFlags struct {
	adminAddress string
	stateDir     string
	output       string
	port         int
	name         string
	cluster      string
	fqdn         string
	subset       string
	direction    string
	address      string
	status       string
	file         string
	timeout      time.Duration
}

func newProxyConfigCmd() *cobra.Command {
	f := &proxyConfigFlags{}
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show a proxy's listeners, routes, clusters, endpoints or bootstrap",
		Long: `proxy-config reads a trellis-proxy's (or Envoy's) admin API — /config_dump and
/clusters — and prints it like istioctl proxy-config.

The target is a workload of the local mesh (NAME or NAME.NAMESPACE, found in
the state file that 'trellis demo' / the local runner writes), an admin
address (HOST:PORT), or, when omitted, --admin-address.`,
		Example: `  trellis proxy-config cluster sleep --fqdn nginx.sidecar.svc.cluster.local
  trellis proxy-config listener 127.0.0.1:15000 --port 15001
  trellis proxy-config route sleep --name 80 -o json
  trellis proxy-config endpoint sleep --cluster "outbound|80||nginx.sidecar.svc.cluster.local"`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:15000", "the proxy's admin address when no target is given")
	pf.StringVar(&f.stateDir, "state-dir", "", "directory of the local mesh's state files (default: the local runner's)")
	pf.StringVarP(&f.output, "output", "o", "short", "output format: short, json or yaml")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	pf.StringVarP(&f.file, "file", "f", "", "read a saved /config_dump JSON file instead of a live proxy")
	sub := []struct {
		use, short string
		run        func(*pcTarget, *proxyConfigFlags, io.Writer) error
		flags      func(c *cobra.Command)
	}{
		{"listener [POD-or-ADDR]", "listeners (ADDRESS PORT MATCH DESTINATION)", fromDump(printListeners), func(c *cobra.Command) {
			c.Flags().IntVar(&f.port, "port", 0, "only listeners on this port")
			c.Flags().StringVar(&f.address, "address", "", "only listeners on this address")
			c.Flags().StringVar(&f.name, "name", "", "only the listener with this name")
		}},
		{"route [POD-or-ADDR]", "route configurations (NAME VHOST NAME DOMAINS MATCH VIRTUAL SERVICE)", fromDump(printRoutes), func(c *cobra.Command) {
			c.Flags().StringVar(&f.name, "name", "", "only the route configuration with this name")
		}},
		{"cluster [POD-or-ADDR]", "clusters (SERVICE FQDN PORT SUBSET DIRECTION TYPE DESTINATION RULE)", fromDump(printClusters), func(c *cobra.Command) {
			c.Flags().StringVar(&f.fqdn, "fqdn", "", "only clusters of this service FQDN")
			c.Flags().IntVar(&f.port, "port", 0, "only clusters of this port")
			c.Flags().StringVar(&f.subset, "subset", "", "only clusters of this subset")
			c.Flags().StringVar(&f.direction, "direction", "", "only inbound or outbound clusters")
		}},
		{"endpoint [POD-or-ADDR]", "endpoints (ENDPOINT STATUS OUTLIER CHECK CLUSTER)", runEndpoints, func(c *cobra.Command) {
			c.Flags().StringVar(&f.cluster, "cluster", "", "only endpoints of this cluster")
			c.Flags().StringVar(&f.address, "address", "", "only endpoints with this IP")
			c.Flags().IntVar(&f.port, "port", 0, "only endpoints on this port")
			c.Flags().StringVar(&f.status, "status", "", "only endpoints with this health status (e.g. HEALTHY)")
		}},
		{"bootstrap [POD-or-ADDR]", "bootstrap configuration", runBootstrap, nil},
		{"secret [POD-or-ADDR]", "SDS secrets (RESOURCE NAME TYPE STATUS VALID CERT SERIAL NUMBER NOT AFTER NOT BEFORE)", runSecrets, nil},
		{"all [POD-or-ADDR]", "listeners, routes, clusters and endpoints", runAll, nil},
	}
	var level string
	logCmd := &cobra.Command{
		Use:   "log [POD-or-ADDR]",
		Short: "Show or change a proxy's logging levels (--level LEVEL or --level NAME:LEVEL,...)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			target, err := resolveTarget(args, f)
			if err != nil {
				return err
			}
			return runLog(target, level, c.OutOrStdout())
		},
	}
	logCmd.Flags().StringVar(&level, "level", "", "level for every logger (trace, debug, info, warning, error, critical, off), or NAME:LEVEL pairs")
	cmd.AddCommand(logCmd)
	for _, s := range sub {
		s := s
		c := &cobra.Command{
			Use:     s.use,
			Short:   "Show a proxy's " + s.short,
			Args:    cobra.MaximumNArgs(1),
			Aliases: aliasesFor(strings.Fields(s.use)[0]),
			RunE: func(c *cobra.Command, args []string) error {
				if err := f.validate(); err != nil {
					return err
				}
				target, err := resolveTarget(args, f)
				if err != nil {
					return err
				}
				return s.run(target, f, c.OutOrStdout())
			},
		}
		if s.flags != nil {
			s.flags(c)
		}
		cmd.AddCommand(c)
	}
	return cmd
}

// fromDump runs print over the target's config dump.
func fromDump(print func(*proxyDump, *proxyConfigFlags, io.Writer) error) func(*pcTarget, *proxyConfigFlags, io.Writer) error {
	return func(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
		d, err := t.dump()
		if err != nil {
			return err
		}
		return print(d, f, w)
	}
}

func aliasesFor(name string) []string {
	switch name {
	case "listener":
		return []string{"listeners", "l"}
	case "route":
		return []string{"routes", "r"}
	case "cluster":
		return []string{"clusters", "c"}
	case "endpoint":
		return []string{"endpoints", "ep"}
	case "bootstrap":
		return []string{"b"}
	case "secret":
		return []string{"secrets", "s"}
	}
	return nil
}

func (f *proxyConfigFlags) validate() error {
	switch f.output {
	case "short", "json", "yaml":
	default:
		return fmt.Errorf("--output %q: use short, json or yaml", f.output)
	}
	switch f.direction {
	case "", "inbound", "outbound":
	default:
		return fmt.Errorf("--direction %q: use inbound or outbound", f.direction)
	}
	if f.port < 0 || f.port > 65535 {
		return fmt.Errorf("--port %d: must be within [0, 65535]", f.port)
	}
	return nil
}

// runAll is `proxy-config all`: the whole dump as is with -o json or
// yaml, else the cluster, listener, route and endpoint tables.
func runAll(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	if f.output != "short" {
		b, err := t.rawDump()
		if err != nil {
			return err
		}
		if err := printJSON(w, f.output, b); err != nil {
			return fmt.Errorf("decode config dump: %w", err)
		}
		return nil
	}
	d, err := t.dump()
	if err != nil {
		return err
	}
	b, err := t.clustersJSON()
	if err != nil {
		return err
	}
	for i, p := range []func() error{
		func() error { return printClusters(d, f, w) },
		func() error { return printListeners(d, f, w) },
		func() error { return printRoutes(d, f, w) },
		func() error { return printEndpoints(b, f, w) },
	} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := p(); err != nil {
			return err
		}
	}
	return nil
}
