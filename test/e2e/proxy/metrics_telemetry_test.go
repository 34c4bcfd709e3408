package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// metricsWorkloads: reviews behind its sidecar (as tracingWorkloads) in
// namespace shop; front calls it through its own sidecar.
const metricsWorkloads = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: shop}
spec:
  address: 127.0.0.1
  ports: {http: {{INBOUND_PORT}}}
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: shop}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{APP_PORT}}
`

// metricsNamespaceTelemetry is shop's Telemetry: no REQUEST_COUNT on the
// client side; on REQUEST_COUNT, request_protocol removed and a user tag
// from the x-user request header (anonymous without one).
const metricsNamespaceTelemetry = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop, namespace: shop}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        user: {operation: UPSERT, value: "request.headers['x-user'] | 'anonymous'"}
`

// metricsWorkloadTelemetry selects reviews: its user tag is {{VALUE}}.
const metricsWorkloadTelemetry = `apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        user: {value: "{{VALUE}}"}
`

// TestTelemetryMetricsThroughSidecars drives Telemetry.metrics through
// real trellisd and two real trellis-proxy sidecars (front -> reviews ->
// the app) and reads each sidecar's /stats/prometheus:
//   - the namespace's Telemetry disables REQUEST_COUNT for CLIENT: front's
//     sidecar (reporter=source) has no istio_requests_total but still its
//     istio_request_duration_milliseconds; reviews' (reporter=destination)
//     has istio_requests_total;
//   - it removes request_protocol from REQUEST_COUNT: reviews' series have
//     no such label, its duration series keep it;
//   - it upserts user from the x-user header: the series carry the
//     header's value, or the fallback without the header;
//   - a Telemetry selecting reviews wins over the namespace's: its literal
//     user value labels the requests after it is applied;
//   - a bad expression in that file is rejected and the last good config
//     keeps serving; a fixed one applies again.
func TestTelemetryMetricsThroughSidecars(t *testing.T) {
	dir := t.TempDir()
	app := versionServer(t, "reviews-v1")
	inbound := freePort(t)
	writeConfig(t, dir, "workloads.yaml", metricsWorkloads, map[string]string{"INBOUND_PORT": port(inbound), "APP_PORT": port(app)})
	writeConfig(t, dir, "telemetry.yaml", metricsNamespaceTelemetry, nil)
	td := startTrellisd(t, dir, "")

	reviewsStats := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "reviews-1", "--namespace", "shop",
		"--labels", "app=reviews,version=v1", "--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", reviewsStats, "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound), "--drain-duration", "1s")
	outbound, frontStats := freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "front-1", "--namespace", "shop",
		"--labels", "app=front,version=v2", "--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", frontStats, "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)), "--drain-duration", "1s")

	client := &http.Client{Timeout: 5 * time.Second}
	call := func(user string) error {
		req, _ := http.NewRequest("GET", "http://"+outbound+"/reviews", nil)
		req.Host = "reviews.shop.svc.cluster.local"
		if user != "" {
			req.Header.Set("x-user", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "reviews-v1" {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	// requestsByUser sums reviews' istio_requests_total by its user label.
	requestsByUser := func() (map[string]float64, *dto.MetricFamily, error) {
		fams, err := promScrape(reviewsStats)
		if err != nil {
			return nil, nil, err
		}
		rq := fams["istio_requests_total"]
		out := map[string]float64{}
		for _, m := range rq.GetMetric() {
			u := "<none>"
			for _, l := range m.GetLabel() {
				if l.GetName() == "user" {
					u = l.GetValue()
				}
			}
			out[u] += m.GetCounter().GetValue()
		}
		return out, rq, nil
	}
	// The first 200 may come before the sidecars have the Telemetry's
	// listeners; wait until reviews labels by user, then count from there.
	eventually(t, "front -> reviews with the Telemetry applied", func() error {
		if err := call("warmup"); err != nil {
			return err
		}
		got, _, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["warmup"] == 0 {
			return fmt.Errorf("no user=\"warmup\" series yet: %v", got)
		}
		return nil
	})
	for _, u := range []string{"jesse", "jesse", "ann", ""} {
		if err := call(u); err != nil {
			t.Fatal(err)
		}
	}

	// (a) REQUEST_COUNT disabled on the client side only.
	eventually(t, "front's metrics without istio_requests_total", func() error {
		fams, err := promScrape(frontStats)
		if err != nil {
			return err
		}
		if rq := fams["istio_requests_total"]; rq != nil {
			return fmt.Errorf("front (reporter=source) has istio_requests_total: %v", rq.GetMetric())
		}
		d := fams["istio_request_duration_milliseconds"]
		if d == nil {
			return fmt.Errorf("front has no istio_request_duration_milliseconds; only REQUEST_COUNT is disabled")
		}
		for _, m := range d.GetMetric() {
			if lv(m, "reporter") != "source" {
				return fmt.Errorf("front's duration series %v: want reporter=source", m.GetLabel())
			}
		}
		return nil
	})
	// (b) and (c): reviews' series, by the header's value, without
	// request_protocol.
	eventually(t, "reviews' istio_requests_total by user", func() error {
		got, rq, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["jesse"] != 2 || got["ann"] != 1 || got["anonymous"] != 1 {
			return fmt.Errorf("got requests by user %v, want jesse 2, ann 1, anonymous 1", got)
		}
		for _, m := range rq.GetMetric() {
			if lv(m, "reporter") != "destination" {
				return fmt.Errorf("series %v: want reporter=destination", m.GetLabel())
			}
			if hasLabel(m, "request_protocol") {
				return fmt.Errorf("series %v still has request_protocol", m.GetLabel())
			}
		}
		return nil
	})
	fams, err := promScrape(reviewsStats)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fams["istio_request_duration_milliseconds"].GetMetric() {
		if lv(m, "request_protocol") != "http" || hasLabel(m, "user") {
			t.Errorf("reviews' duration series %v: want request_protocol=http and no user (the overrides are on REQUEST_COUNT)", m.GetLabel())
		}
	}

	// (d) The Telemetry selecting reviews wins over the namespace's.
	writeConfig(t, dir, "reviews-telemetry.yaml", metricsWorkloadTelemetry, map[string]string{"VALUE": "'workload'"})
	eventually(t, "reviews labelling with the workload's Telemetry", func() error {
		if err := call("jesse"); err != nil {
			return err
		}
		got, _, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["workload"] == 0 {
			return fmt.Errorf("no user=\"workload\" series yet: %v", got)
		}
		return nil
	})
	before, _, err := requestsByUser()
	if err != nil {
		t.Fatal(err)
	}
	if err := call("jesse"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the next request labelled by the workload's Telemetry", func() error {
		got, _, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["workload"] != before["workload"]+1 || got["jesse"] != before["jesse"] {
			return fmt.Errorf("got %v after %v, want one more user=workload and no more user=jesse", got, before)
		}
		return nil
	})

	// A bad expression: the file is rejected and its last good content
	// keeps serving.
	writeConfig(t, dir, "reviews-telemetry.yaml", metricsWorkloadTelemetry, map[string]string{"VALUE": "xds.cluster_name"})
	time.Sleep(300 * time.Millisecond) // well past the 10 ms debounce: a wrong push would have reached the sidecars
	before, _, err = requestsByUser()
	if err != nil {
		t.Fatal(err)
	}
	if err := call("jesse"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the request labelled by the last good config", func() error {
		got, _, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["workload"] != before["workload"]+1 {
			return fmt.Errorf("got %v after %v, want one more user=workload", got, before)
		}
		return nil
	})
	writeConfig(t, dir, "reviews-telemetry.yaml", metricsWorkloadTelemetry, map[string]string{"VALUE": "request.headers['x-user'] | 'nobody'"})
	eventually(t, "the fixed Telemetry applied", func() error {
		if err := call(""); err != nil {
			return err
		}
		got, _, err := requestsByUser()
		if err != nil {
			return err
		}
		if got["nobody"] == 0 {
			return fmt.Errorf("no user=\"nobody\" series yet: %v", got)
		}
		return nil
	})
}

func lv(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return true
		}
	}
	return false
}
