package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
)

func newExplainCmd() *cobra.Command {
	f := &proxyConfigFlags{}
	var limit int
	cmd := &cobra.Command{
		Use:   "explain [POD | NAMESPACE/NAME | NAME.NAMESPACE | ADDR]",
		Short: "Show the last failures a workload's proxy saw, with their reasons",
		Long: `explain reads a trellis-proxy's last failed requests (its admin API's
/debug/failures: non-2xx and proxy-made responses, newest first) and prints,
for each, when it happened, the request, status, Envoy's response flags, the
response code details in words, the route and the upstream cluster.

The target is a workload of the local mesh (NAME, NAMESPACE/NAME or
NAME.NAMESPACE, found in the local mesh's state files), an admin address
(HOST:PORT), or, when omitted, --admin-address.`,
		Example: `  trellis explain front
  trellis explain default/front --limit 3
  trellis explain 127.0.0.1:15000 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if f.output != "short" && f.output != "json" {
				return fmt.Errorf("--output %q: use short or json", f.output)
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: must not be negative", limit)
			}
			if len(args) == 1 {
				if ns, name, ok := strings.Cut(args[0], "/"); ok {
					args = []string{name + "." + ns}
				}
			}
			t, err := resolveTarget(args, f)
			if err != nil {
				return err
			}
			b, err := t.get("/debug/failures")
			if err != nil {
				return err
			}
			var s failures.Snapshot
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("decode /debug/failures: %w", err)
			}
			if limit > 0 && len(s.Failures) > limit {
				s.Failures = s.Failures[:limit]
			}
			if f.output == "json" {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			name := t.address
			if len(args) == 1 {
				name = args[0]
			}
			printFailures(c.OutOrStdout(), name, s)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.adminAddress, "admin-address", "127.0.0.1:15000", "the proxy's admin address when no target is given")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "directory of the local mesh's state files (default: the local runner's)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "short", "output format: short or json")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	cmd.Flags().IntVar(&limit, "limit", 10, "show at most this many failures, newest first (0: all the proxy keeps)")
	return cmd
}

// printFailures writes one block per failure, newest first.
func printFailures(w io.Writer, name string, s failures.Snapshot) {
	if len(s.Failures) == 0 {
		fmt.Fprintf(w, "No failures seen by the proxy of %s.\n", name)
		return
	}
	fmt.Fprintf(w, "Last %d of %d failures seen by the proxy of %s (it keeps %d), newest first:\n", len(s.Failures), s.Total, name, s.Capacity)
	for _, f := range s.Failures {
		fmt.Fprintln(w)
		req := f.Protocol
		if f.Method != "" {
			req = f.Method + " " + f.Authority + f.Path
		}
		status := fmt.Sprint(f.Status)
		if f.GRPCStatus >= 0 {
			status += fmt.Sprintf(" grpc-status %d", f.GRPCStatus)
		}
		made := "the upstream answered"
		if f.ProxyMade {
			made = "answered by the proxy"
		}
		fmt.Fprintf(w, "%s  %s  %s  -> %s %s (%s)\n", f.Time.Format(time.RFC3339Nano), f.Direction, req, status, f.ResponseFlags, made)
		if reason := respdetail.Explain(f.Details); reason != "" {
			fmt.Fprintf(w, "  reason:           %s\n", reason)
		}
		fmt.Fprintf(w, "  details:          %s\n", dash(f.Details))
		fmt.Fprintf(w, "  route:            %s\n", dash(f.Route))
		fmt.Fprintf(w, "  upstream cluster: %s\n", dash(f.UpstreamCluster))
		if f.UpstreamHost != "" {
			fmt.Fprintf(w, "  upstream host:    %s\n", f.UpstreamHost)
		}
		if f.TransportFailure != "" {
			fmt.Fprintf(w, "  transport:        %s\n", f.TransportFailure)
		}
		if f.RequestID != "" {
			fmt.Fprintf(w, "  request id:       %s\n", f.RequestID)
		}
	}
}
