package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
)

const explainConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill, namespace: billing}
spec:
  hosts: [bill.billing.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9999, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: bill}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bill-v1, namespace: billing}
spec:
  address: 127.0.0.1
  ports: {http: {{PORT}}}
  labels: {app: bill, version: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bill, namespace: billing}
spec:
  host: bill.billing.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bill-routes, namespace: billing}
spec:
  hosts: [bill.billing.svc.cluster.local]
  http:
  - name: faulty
    match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: bill.billing.svc.cluster.local, subset: v1}}]
  - name: to-v2
    match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: bill.billing.svc.cluster.local, subset: v2}}]
  - name: ok
    match: [{uri: {prefix: /ok}}]
    route: [{destination: {host: bill.billing.svc.cluster.local, subset: v1}}]
`

// TestExplainNamesTheFailures runs trellisd and a sidecar trellis-proxy
// for a client of bill (ServiceEntry, DestinationRule subsets v1 and v2,
// v2 without endpoints, and a VirtualService with a fault abort and no
// catch-all route), causes FI, UH and NR failures, and reads them back
// with the real `trellis explain`, by admin address and by the local
// mesh's NAMESPACE/NAME: each is named with its reason, route and
// cluster. The fault abort is also counted in istio_requests_total
// against destination_service bill.billing.svc.cluster.local, as Istio.
func TestExplainNamesTheFailures(t *testing.T) {
	const fqdn = "bill.billing.svc.cluster.local"
	dir := t.TempDir()
	bill := versionServer(t, "bill-v1")
	writeConfig(t, dir, "bill.yaml", explainConfig, map[string]string{"PORT": port(bill)})
	td := startTrellisd(t, dir, "")
	out, admin, prom := freePort(t), freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.3", "--pod-name", "toolbox", "--namespace", "billing",
		"--labels", "app=toolbox,version=v1", "--admin-address", admin,
		"--ready-address", "", "--prometheus-address", prom, "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:9999=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", out, freePort(t), freePort(t)),
		"--drain-duration", "1s")

	c := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+out+path, nil)
		req.Host = fqdn
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "bill through the sidecar", func() error {
		if code, body := get("/ok"); code != 200 || body != "bill-v1" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
	for path, want := range map[string]int{"/fault": 503, "/v2": 503, "/elsewhere": 404} {
		if code, body := get(path); code != want {
			t.Errorf("%s: got %d %q, want %d", path, code, body, want)
		}
	}

	wantLines := []string{
		"-> 503 FI",
		"reason:           fault injected by VirtualService billing/bill-routes (route faulty)",
		"route:            faulty",
		"upstream cluster: outbound|9999|v1|" + fqdn,
		"-> 503 UH",
		"reason:           no healthy upstream in cluster outbound|9999|v2|" + fqdn,
		"details:          no_healthy_upstream;cluster=outbound|9999|v2|" + fqdn,
		"route:            to-v2",
		"-> 404 NR",
		"reason:           no route matched in virtual host " + fqdn + ":9999 (route configuration 9999)",
	}
	var text string
	eventually(t, "trellis explain", func() error {
		var err error
		if text, err = runCLI(t, "explain", admin); err != nil {
			return err
		}
		for _, w := range wantLines {
			if !strings.Contains(text, w) {
				return fmt.Errorf("no %q in:\n%s", w, text)
			}
		}
		return nil
	})
	if strings.Contains(text, "/ok") {
		t.Errorf("a successful request is listed:\n%s", text)
	}
	if !strings.HasPrefix(text, "Last 3 of 3 failures") {
		t.Errorf("got header %q, want Last 3 of 3 failures", strings.SplitN(text, "\n", 2)[0])
	}
	t.Logf("trellis explain:\n%s", text)

	// The same proxy found by NAMESPACE/NAME in the local mesh's state.
	stateDir := t.TempDir()
	st, _ := json.Marshal(local.State{Prefix: "ex", Workloads: []local.StateWorkload{{Name: "toolbox", Namespace: "billing", IP: "127.0.0.3", AdminAddress: admin}}})
	if err := os.WriteFile(filepath.Join(stateDir, "local-ex.json"), st, 0o644); err != nil {
		t.Fatal(err)
	}
	js, err := runCLI(t, "explain", "billing/toolbox", "--state-dir", stateDir, "-o", "json", "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	var snap struct {
		Total    int `json:"total"`
		Failures []struct {
			Status  int    `json:"status"`
			Details string `json:"details"`
		} `json:"failures"`
	}
	if err := json.Unmarshal([]byte(js), &snap); err != nil {
		t.Fatalf("explain -o json: %v\n%s", err, js)
	}
	if snap.Total != 3 || len(snap.Failures) != 1 {
		t.Errorf("explain billing/toolbox --limit 1: got total %d and %d failures, want 3 and 1", snap.Total, len(snap.Failures))
	}
	if _, err := runCLI(t, "explain", "billing/nobody", "--state-dir", stateDir); err == nil || !strings.Contains(err.Error(), "known workloads: toolbox.billing") {
		t.Errorf("explain of an unknown workload: got %v, want the known workloads listed", err)
	}

	// Istio counts the abort against the route's service.
	eventually(t, "FI in istio_requests_total", func() error {
		return wantProm(prom, map[string]string{"reporter": "source", "response_flags": "FI", "response_code": "503",
			"destination_service": fqdn, "destination_service_name": "bill", "destination_service_namespace": "billing",
			"source_app": "toolbox"}, map[string]float64{"istio_requests_total": 1})
	})
}
