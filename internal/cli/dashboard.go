package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/dashboard"
	"github.com/trellis-mesh/trellis/internal/local"
)

func newDashboardCmd() *cobra.Command {
	var addr, prefix, stateDir string
	var open bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print (or open) the URL of trellisd's web dashboard",
		Long: `dashboard prints the URL of the web UI trellisd serves: a live service graph
(request rate, error share, p99 and mTLS per edge) and, per service, its
VirtualServices and DestinationRules, validation findings, the traffic split
as configured and as measured, its proxies' sync state and recent errors.

trellisd serves it on 127.0.0.1:20001 (--dashboard-address). A local mesh
(trellis local up, trellis demo) serves it on its bridge address, port
20001; with such a mesh running under --prefix, that URL is printed.
It checks that the dashboard answers; --open also starts xdg-open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			url := dashboardURL(addr, prefix, stateDir)
			fmt.Fprintln(cmd.OutOrStdout(), url)
			if err := probeDashboard(cmd.Context(), url); err != nil {
				return fmt.Errorf("the dashboard at %s does not answer (is trellisd running? set --address to its --dashboard-address): %w", url, err)
			}
			if open {
				if err := exec.Command("xdg-open", url).Start(); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "cannot open a browser (%v); open the URL above\n", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "address", "", "trellisd's --dashboard-address (default: the local mesh's, else "+dashboard.DefaultAddress+")")
	cmd.Flags().StringVar(&prefix, "prefix", "trellis", "name prefix of the local mesh to look for")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory of the local mesh (default as trellis local)")
	cmd.Flags().BoolVar(&open, "open", false, "open the dashboard in a browser (xdg-open)")
	return cmd
}

// dashboardURL is the explicit address, else the running local mesh's,
// else trellisd's default.
func dashboardURL(addr, prefix, stateDir string) string {
	if addr != "" {
		if !strings.Contains(addr, "://") {
			addr = "http://" + addr
		}
		return strings.TrimRight(addr, "/") + "/"
	}
	if st, err := local.ReadState(local.StatePath(stateDir, prefix)); err == nil && st != nil && st.HostIP != "" {
		return local.DashboardURL(st.HostIP)
	}
	return "http://" + dashboard.DefaultAddress + "/"
}

// probeDashboard checks that the dashboard's API answers.
func probeDashboard(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"api/graph", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %sapi/graph: %s", url, resp.Status)
	}
	return nil
}
