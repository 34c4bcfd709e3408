package proxy

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// burstWorkloads is seed 004's worker-service in the default namespace.
// As in Kubernetes, the endpoint port is the port the worker's sidecar
// captures: worker-deployment has its own loopback address, {{WORKER_IP}},
// where its sidecar binds 15006 (--rebind), and its Sidecar resource sends
// that port to the app. STRICT mTLS between the sidecars.
const burstWorkloads = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker-service, namespace: default}
spec:
  hosts: [worker-service.default.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-deployment, namespace: default}
spec:
  address: {{WORKER_IP}}
  serviceAccount: worker
  ports: {http: 15006}
  labels: {app: worker, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: worker, namespace: default}
spec:
  workloadSelector: {labels: {app: worker}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{APP_PORT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
`

// istioBuckets are the le bounds of istio_request_duration_milliseconds:
// Envoy's default histogram buckets (Istio sets none of its own), written
// as Envoy's /stats/prometheus writes them.
var istioBuckets = []string{"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
	"10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"}

// promSample is one series of a Prometheus instant-query vector.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// promQuery runs an instant query over Prometheus' HTTP API (the client
// library internal/shift uses) and wants a vector back.
func promQuery(base, q string) ([]promSample, error) {
	c, err := promapi.NewClient(promapi.Config{Address: base})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, _, err := promv1.NewAPI(c).Query(ctx, q, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: got a %s, want a vector", q, v.Type())
	}
	out := make([]promSample, 0, len(vec))
	for _, smp := range vec {
		m := make(map[string]string, len(smp.Metric))
		for k, v := range smp.Metric {
			m[string(k)] = string(v)
		}
		out = append(out, promSample{Metric: m, Value: float64(smp.Value)})
	}
	return out, nil
}

// seriesKey renders a sample's labels in a fixed (sorted) order.
func seriesKey(m map[string]string) string {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.String()
}

// startScrapingPrometheus runs the Debian prometheus binary with one job
// per endpoint kind: "envoy-stats" scrapes the sidecars' 15090, "merged"
// their 15020, every second.
func startScrapingPrometheus(t *testing.T, stats, merged []string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: prometheus is not installed (apt-get install --no-install-recommends prometheus, or scripts/setup.sh)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: envoy-stats
  metrics_path: /stats/prometheus
  static_configs: [{targets: ["%s"]}]
- job_name: merged
  metrics_path: /stats/prometheus
  static_configs: [{targets: ["%s"]}]
`, strings.Join(stats, `", "`), strings.Join(merged, `", "`))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	log := &lockedBuf{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	// Ready, then scraping every target (discovery hands targets to the
	// scrapers some seconds after start).
	base := "http://" + addr
	eventually(t, "prometheus scraping every sidecar endpoint", func() error {
		res, err := promQuery(base, `up == 1`)
		if err != nil {
			return err
		}
		if len(res) != len(stats)+len(merged) {
			return fmt.Errorf("targets up: %v", res)
		}
		return nil
	})
	return base
}

// TestPromQLOverScrapedSidecars is seed 004's monitoring through a real
// Prometheus: trellisd (with its CA) configures two real trellis-proxy
// sidecars, frontend-deployment's and worker-deployment's; a caller's
// requests go caller -> frontend's sidecar -> (mTLS) worker's sidecar ->
// the app, which answers 200, or 500 on /fail, after 30 ms. Prometheus
// scrapes both sidecars' 15090 (job envoy-stats) and 15020 (job merged)
// each second, and over its HTTP API:
//   - the seed's query, sum(rate(istio_requests_total{reporter=
//     "destination",destination_service=...,source_workload=
//     "frontend-deployment"}[15s])) by (source_workload, source_app,
//     destination_service), gives the one series with those labels and a
//     rate no larger than the caller's;
//   - istio_requests_total summed by reporter, the workloads, the service,
//     response_code and connection_security_policy has exactly the series
//     and counts of what the caller received, mutual_tls at the
//     destination, unknown at the source, the same from both endpoints;
//   - istio_request_duration_milliseconds_bucket has Envoy's default
//     bounds (Istio's) and nothing at or below 25 ms at the destination;
//     histogram_quantile(0.99, ...) is finite, above 25 and below 10 s.
func TestPromQLOverScrapedSidecars(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	app := backendServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "worker")
	}))
	// A loopback address of this test's own (127.0.0.0/8 is all local).
	const workerIP = "127.0.44.4"
	inbound := workerIP + ":15006"
	writeConfig(t, cfg, "workloads.yaml", burstWorkloads, map[string]string{"WORKER_IP": workerIP, "APP_PORT": port(app)})

	frontToken, _ := ca.NewToken()
	workerToken, _ := ca.NewToken()
	creds := filepath.Join(dir, "workload-credentials")
	if err := ca.WriteCredentials(creds, map[string]ca.Caller{frontToken: {Namespace: "default", ServiceAccount: "frontend"},
		workerToken: {Namespace: "default", ServiceAccount: "worker"}}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root-cert.pem")
	caAddr := freePort(t)
	plane := &caPlane{t: t, opts: trellisd.Options{ConfigDir: cfg, XDSAddress: "127.0.0.1:0", Debounce: 10 * time.Millisecond,
		CAAddress: caAddr, CADir: filepath.Join(dir, "ca"), WorkloadCredentials: creds, CARootFile: root, Logf: func(string, ...any) {}}}
	plane.start()
	t.Cleanup(plane.stop)

	sidecar := func(pod, workload, sa, labels, ip, token, rebind, stats, merged string) {
		startProxyWithCredential(t, token, caAddr, root, nil, "--xds-address", plane.server.XDSAddr(), "--ip", ip, "--pod-name", pod, "--namespace", "default",
			"--workload-name", workload, "--service-account", sa, "--labels", labels, "--admin-address", freePort(t),
			"--ready-address", "", "--prometheus-address", stats, "--merged-address", merged, "--rebind", rebind, "--drain-duration", "1s")
	}
	workerStats, workerMerged := freePort(t), freePort(t)
	sidecar("worker-deployment-5d8f7-x2k4q", "worker-deployment", "worker", "app=worker,version=v1", workerIP, workerToken,
		fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound), workerStats, workerMerged)
	outbound, frontStats, frontMerged := freePort(t), freePort(t), freePort(t)
	sidecar("frontend-deployment-7c9d-h8v2r", "frontend-deployment", "frontend", "app=frontend,version=v1", "127.0.0.2", frontToken,
		fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)), frontStats, frontMerged)
	prom := startScrapingPrometheus(t, []string{frontStats, workerStats}, []string{frontMerged, workerMerged})

	// The caller, tallying every response code it gets (the source
	// sidecar reports each of them).
	const svc = "worker-service.default.svc.cluster.local"
	client := &http.Client{Timeout: 10 * time.Second}
	got := map[string]int{}
	call := func(path string) (int, error) {
		req, _ := http.NewRequest("GET", "http://"+outbound+path, nil)
		req.Host = svc
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got[strconv.Itoa(resp.StatusCode)]++
		return resp.StatusCode, nil
	}
	eventually(t, "a 200 through both sidecars", func() error {
		code, err := call("/")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	// Paced traffic for 4 s: 20 requests a second, every fifth on /fail.
	start := time.Now()
	for i := 0; i < 80; i++ {
		path := "/"
		if i%5 == 4 {
			path = "/fail"
		}
		if _, err := call(path); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 50 * time.Millisecond)))
	}
	sent := time.Since(start).Seconds()
	if got["200"] < 65 || got["500"] != 16 {
		t.Fatalf("caller got %v, want every request answered by the app", got)
	}
	callerRate := float64(80) / sent
	t.Logf("caller got %v; %.1f req/s", got, callerRate)

	// Istio's labels, summed as dashboards do, equal the caller's tally;
	// wait for the scrapes that see the last request.
	want := map[string]float64{}
	for code, n := range got {
		want[seriesKey(map[string]string{"reporter": "source", "source_workload": "frontend-deployment", "destination_workload": "worker-deployment",
			"destination_service": svc, "response_code": code, "connection_security_policy": "unknown"})] = float64(n)
	}
	for _, code := range []string{"200", "500"} {
		want[seriesKey(map[string]string{"reporter": "destination", "source_workload": "frontend-deployment", "destination_workload": "worker-deployment",
			"destination_service": svc, "response_code": code, "connection_security_policy": "mutual_tls"})] = float64(got[code])
	}
	for _, job := range []string{"envoy-stats", "merged"} {
		q := `sum(istio_requests_total{job="` + job + `"}) by (reporter, source_workload, destination_workload, destination_service, response_code, connection_security_policy)`
		eventually(t, job+": "+q, func() error {
			res, err := promQuery(prom, q)
			if err != nil {
				return err
			}
			have := map[string]float64{}
			for _, s := range res {
				have[seriesKey(s.Metric)] = s.Value
			}
			for k, v := range want {
				if have[k] != v {
					return fmt.Errorf("series {%s} = %v, want %v (all: %v)", k, have[k], v, have)
				}
			}
			for k := range have {
				if _, ok := want[k]; !ok {
					return fmt.Errorf("unexpected series {%s} (want %v)", k, want)
				}
			}
			return nil
		})
	}

	// Seed 004's query, as its istiowatcher sends it.
	seed := `sum(rate(istio_requests_total{reporter="destination",destination_service="` + svc + `",source_workload="frontend-deployment"}[15s]))by(source_workload,source_app,destination_service)`
	for _, job := range []string{"envoy-stats", "merged"} {
		q := strings.Replace(seed, `reporter="destination"`, `reporter="destination",job="`+job+`"`, 1)
		res, err := promQuery(prom, q)
		if err != nil {
			t.Fatal(err)
		}
		wantKey := seriesKey(map[string]string{"source_workload": "frontend-deployment", "source_app": "frontend", "destination_service": svc})
		if len(res) != 1 || seriesKey(res[0].Metric) != wantKey {
			t.Fatalf("%s: got %v, want one series {%s}", q, res, wantKey)
		}
		// rate() extrapolates to the window's edges, never past what
		// was sent in the time it was sent.
		if r := res[0].Value; !(r > 0 && r <= 1.5*callerRate) {
			t.Errorf("%s: rate %v, want in (0, %.1f]", q, r, 1.5*callerRate)
		}
		t.Logf("%s: %v", job, res[0].Value)
	}

	// The duration histogram: Istio's bucket bounds, each series the
	// same, and the 30 ms the app takes.
	dest := `reporter="destination",destination_workload="worker-deployment"`
	for _, reporter := range []string{"source", "destination"} {
		res, err := promQuery(prom, `count(istio_request_duration_milliseconds_bucket{job="merged",reporter="`+reporter+`"}) by (le, response_code)`)
		if err != nil {
			t.Fatal(err)
		}
		les := map[string][]string{}
		for _, s := range res {
			les[s.Metric["response_code"]] = append(les[s.Metric["response_code"]], s.Metric["le"])
		}
		for code, l := range les {
			sort.Slice(l, func(i, j int) bool { return leValue(l[i]) < leValue(l[j]) })
			if strings.Join(l, ",") != strings.Join(istioBuckets, ",") {
				t.Errorf("%s %s: le bounds %v, want Istio's %v", reporter, code, l, istioBuckets)
			}
		}
		if len(les) < 2 {
			t.Errorf("%s: buckets for response codes %v, want 200 and 500", reporter, les)
		}
	}
	for q, w := range map[string]float64{
		`sum(istio_request_duration_milliseconds_bucket{` + dest + `,job="merged",le="25"})`:   0,
		`sum(istio_request_duration_milliseconds_bucket{` + dest + `,job="merged",le="+Inf"})`: float64(got["200"] + got["500"]),
		`sum(istio_request_duration_milliseconds_count{` + dest + `,job="envoy-stats"})`:       float64(got["200"] + got["500"]),
	} {
		res, err := promQuery(prom, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Value != w {
			t.Errorf("%s: got %v, want %v", q, res, w)
		}
	}
	for _, job := range []string{"envoy-stats", "merged"} {
		q := `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{` + dest + `,job="` + job + `"}[1m])) by (le))`
		res, err := promQuery(prom, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 {
			t.Fatalf("%s: got %v, want one sample", q, res)
		}
		p99 := res[0].Value
		if math.IsNaN(p99) || math.IsInf(p99, 0) || p99 <= 25 || p99 >= 10000 {
			t.Errorf("%s = %v, want finite, above the app's 30 ms bucket floor (25) and below 10 s", q, p99)
		}
		t.Logf("%s: p99 %v ms", job, p99)
	}
}

func leValue(s string) float64 {
	if s == "+Inf" {
		return math.Inf(1)
	}
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
