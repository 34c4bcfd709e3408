package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/xds/server"
)

// synczBody is what trellisd's /debug/syncz returns.
type synczBody struct {
	Version string               `json:"version"`
	Proxies []server.ProxyStatus `json:"proxies"`
}

func newProxyStatusCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "proxy-status [PROXY_ID_PREFIX]",
		Short: "Show whether each connected proxy has the config trellisd sent it",
		Long: `proxy-status asks trellisd (its /debug/syncz endpoint) for every connected
proxy and prints, per xDS type, whether the last response was ACKed:

  SYNCED    the proxy ACKed the last response
  NACKED    the proxy rejected the last response (see /debug/syncz for why)
  STALE     a response was sent and not answered yet
  NOT SENT  nothing of that type was sent (the proxy did not ask)

Like istioctl proxy-status. An argument keeps only proxies whose id or
name starts with it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := fetchSyncz(addr)
			if err != nil {
				return err
			}
			filter := ""
			if len(args) == 1 {
				filter = args[0]
			}
			return writeProxyStatus(cmd.OutOrStdout(), body, filter)
		},
	}
	cmd.Flags().StringVar(&addr, "trellisd-address", "http://127.0.0.1:8080", "trellisd debug address (its --debug-address)")
	return cmd
}

func fetchSyncz(addr string) (*synczBody, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	url := strings.TrimRight(addr, "/") + "/debug/syncz"
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("reach trellisd at %s (set --trellisd-address to its --debug-address): %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	var body synczBody
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("decode %s: %w", url, err)
	}
	return &body, nil
}

// proxyName shortens a node id "sidecar~IP~POD.NS~NS.svc.cluster.local" to
// "POD.NS", as istioctl shows it; other ids are shown whole.
func proxyName(id string) string {
	parts := strings.Split(id, "~")
	if len(parts) == 4 && parts[2] != "" {
		return parts[2]
	}
	return id
}

func syncState(ts *server.TypeStatus) string {
	switch {
	case ts == nil || ts.SentNonce == "":
		return "NOT SENT"
	case ts.Nacked():
		return "NACKED"
	case ts.Synced():
		return "SYNCED"
	default:
		return "STALE"
	}
}

func writeProxyStatus(w io.Writer, body *synczBody, filter string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCLUSTER\tCDS\tLDS\tEDS\tRDS\tTRELLISD VERSION\tPROXY VERSION")
	n := 0
	for _, p := range body.Proxies {
		name := proxyName(p.ID)
		if filter != "" && !strings.HasPrefix(p.ID, filter) && !strings.HasPrefix(name, filter) {
			continue
		}
		n++
		byType := map[string]*server.TypeStatus{}
		for i := range p.Types {
			byType[p.Types[i].Type] = &p.Types[i]
		}
		cluster := p.Cluster
		if cluster == "" {
			cluster = "-"
		}
		pv := p.ProxyVersion
		if pv == "" {
			pv = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, cluster,
			syncState(byType["CDS"]), syncState(byType["LDS"]), syncState(byType["EDS"]), syncState(byType["RDS"]),
			body.Version, pv)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 && filter != "" {
		return fmt.Errorf("no connected proxy matches %q", filter)
	}
	return nil
}
