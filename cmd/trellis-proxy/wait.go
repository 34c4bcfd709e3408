package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// waitCommand is `trellis-proxy wait` (Istio's `pilot-agent wait`): the
// postStart hook of a proxy injected without native sidecars. The kubelet
// starts the pod's next container only when the hook returns, so the app
// starts once the proxy reports ready.
func waitCommand() *cobra.Command {
	var (
		url                      string
		timeout, period, request time.Duration
	)
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Return once the proxy reports ready (GET /healthz/ready answers 200), or fail after --timeout",
		Example: "  trellis-proxy wait\n" +
			"  trellis-proxy wait --timeout 2m --url http://127.0.0.1:15021/healthz/ready",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 || period <= 0 || request <= 0 {
				return fmt.Errorf("--timeout, --period and --request-timeout must be positive")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := waitReady(ctx, url, period, request); err != nil {
				return fmt.Errorf("proxy not ready after %s: %w", timeout, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "proxy is ready")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "http://127.0.0.1:15021/healthz/ready", "readiness URL to poll")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long (the hook then fails and the kubelet restarts the container)")
	f.DurationVar(&period, "period", 500*time.Millisecond, "time between polls")
	f.DurationVar(&request, "request-timeout", 500*time.Millisecond, "timeout of one poll")
	return cmd
}

// waitReady polls url until it answers 200 or ctx ends; the error names
// the last answer.
func waitReady(ctx context.Context, url string, period, request time.Duration) error {
	client := &http.Client{Timeout: request}
	t := time.NewTicker(period)
	defer t.Stop()
	last := fmt.Errorf("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("--url: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %s", url, resp.Status)
		} else if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return last
		case <-t.C:
		}
	}
}
