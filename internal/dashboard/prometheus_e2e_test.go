package dashboard

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startPrometheus runs Debian's Prometheus scraping targets'
// /stats/prometheus every second, until the test ends.
func startPrometheus(t *testing.T, targets ...string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: prometheus is not installed (scripts/setup.sh installs it)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: envoy-stats
  metrics_path: /stats/prometheus
  static_configs:
  - targets: ["%s"]
`, strings.Join(targets, `", "`))), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	url := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready after 30s", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGraphThroughPrometheus: a real Prometheus scrapes the proxies'
// exposition; the dashboard's PromQL reads back the same graph the direct
// scrape computes: rate, 5xx share, p99 and mTLS per edge.
func TestGraphThroughPrometheus(t *testing.T) {
	m := newMeshCalls()
	serve := func(write func(w http.ResponseWriter)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { write(w) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	front := serve(func(w http.ResponseWriter) { m.front.WritePrometheus(w) })
	dest := serve(func(w http.ResponseWriter) { m.dest.WritePrometheus(w) })
	url := startPrometheus(t, front, dest)

	// 100 calls/s: 90 to v1, 9 to v2 and 1 failing on v2 (503, 300 ms).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				m.call(9, false, 200, "", 3)
				m.call(0, true, 200, "", 3)
			}
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				m.call(9, false, 200, "", 3)
				m.call(2, true, 503, "", 300)
			}
		}
	}()

	d, err := New(Options{Mesh: fakeMesh{}, PrometheusURL: url, ScrapeInterval: time.Second, Window: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	frontID, svc := workloadID("istio-demo", "front-tomcat-v1"), serviceID("bill-service.istio-demo.svc.cluster.local")
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		d.refresh(ctx)
		tr := d.latest.Load()
		g := BuildGraph(tr.series, nil, nil)
		last = fmt.Sprintf("error %q, edges %+v", tr.err, g.Edges)
		var out, toV1 *Edge
		for i, e := range g.Edges {
			switch {
			case e.Source == frontID && e.Target == svc:
				out = &g.Edges[i]
			case e.Source == svc && e.Target == workloadID("istio-demo", "bill-service-v1"):
				toV1 = &g.Edges[i]
			}
		}
		// Rates from Prometheus' rate() over 10s of 1s scrapes: within 35 %.
		if out == nil || toV1 == nil || math.Abs(out.RPS-100) > 35 || math.Abs(out.ErrorRate-0.1) > 0.05 || out.P99 == nil || *out.P99 <= 5 || !toV1.MTLS {
			continue
		}
		t.Logf("through Prometheus: front -> bill-service %.1f req/s, %.1f%% 5xx, p99 %.1f ms", out.RPS, 100*out.ErrorRate, *out.P99)
		return
	}
	t.Fatalf("want front -> bill-service at ~100 req/s, ~10%% 5xx, a p99 above 5 ms and mTLS to v1; last: %s", last)
}
