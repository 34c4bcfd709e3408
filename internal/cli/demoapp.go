package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/demoapp"
)

// newDemoappCmd is `trellis demoapp`: the small HTTP apps the demo and
// local mode run as workloads, and the load client that calls them. Hidden:
// it is a building block, not a user command.
func newDemoappCmd() *cobra.Command {
	app := &demoapp.App{}
	var listen, failPercent string
	cmd := &cobra.Command{
		Use:    "demoapp",
		Short:  "Run a demo HTTP workload that answers \"this is NAME\"",
		Hidden: true,
		Example: "  trellis demoapp --name bill-service-v1 --listen :80\n" +
			"  trellis demoapp --name canary-v1 --version v1 --delay 100ms --fail-percent 10",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if failPercent != "" {
				p, err := demoapp.ParsePercent(failPercent)
				if err != nil {
					return fmt.Errorf("--fail-percent: got %q, want a number 0-100", failPercent)
				}
				app.FailPercent = p
			}
			return app.ListenAndServe(cmd.Context(), listen, func(a net.Addr) {
				fmt.Fprintf(cmd.ErrOrStderr(), "demoapp %s listening on %s\n", app.Name, a)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&app.Name, "name", "", "what the app answers: \"this is NAME\" (required)")
	f.StringVar(&app.Version, "version", "", "what /env/version answers when $version is unset (default v1)")
	f.StringVar(&listen, "listen", ":80", "address to listen on")
	f.DurationVar(&app.Delay, "delay", 0, "delay before every answer")
	f.StringVar(&failPercent, "fail-percent", "", "share of requests (0-100) answered with --fail-status")
	f.IntVar(&app.FailStatus, "fail-status", 503, "status of failed requests")
	cmd.AddCommand(newDemoappLoadCmd())
	return cmd
}

func newDemoappLoadCmd() *cobra.Command {
	var (
		l       demoapp.Load
		headers []string
		reuse   bool
	)
	cmd := &cobra.Command{
		Use:   "load URL",
		Short: "Call URL --calls times and print a JSON summary of who answered and how fast",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l.URL = args[0]
			l.Header = http.Header{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("--header: got %q, want NAME:VALUE", h)
				}
				l.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			conc := l.Concurrency
			if conc <= 0 {
				conc = 10
			}
			l.Client = &http.Client{Timeout: l.Timeout, Transport: &http.Transport{
				DisableKeepAlives: !reuse, MaxIdleConnsPerHost: conc, DisableCompression: true,
			}}
			if l.Client.Timeout == 0 {
				l.Client.Timeout = 30 * time.Second
			}
			res, err := l.Run(cmd.Context())
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&l.Calls, "calls", 100, "number of calls")
	f.IntVar(&l.Concurrency, "concurrency", 10, "calls in flight")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header NAME:VALUE (repeatable)")
	f.StringVar(&l.Host, "host", "", "Host header, e.g. bill-service:9999 when calling a proxy's explicit port")
	f.DurationVar(&l.Timeout, "timeout", 30*time.Second, "per-call timeout")
	f.BoolVar(&reuse, "keepalive", true, "reuse connections (false: a new connection per call)")
	return cmd
}
