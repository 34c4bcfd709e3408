package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// workloads renders a ServiceEntry with two WorkloadEntries (v1, v2) on
// loopback ports: the local-mode stand-in for the scenario's Deployments
// and Service.
func workloads(ns, svc, selectorKey string, port int, v1, v2 string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  hosts: [%[2]s.%[1]s.svc.cluster.local]
  addresses: [240.240.0.%[7]d]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: %[4]d, name: http, protocol: HTTP}
  workloadSelector:
    labels: {%[3]s: %[2]s}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[2]s-v1, namespace: %[1]s}
spec:
  address: 127.0.0.1
  ports: {http: %[5]s}
  labels: {%[3]s: %[2]s, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[2]s-v2, namespace: %[1]s}
spec:
  address: 127.0.0.1
  ports: {http: %[6]s}
  labels: {%[3]s: %[2]s, version: v2}
`, ns, svc, selectorKey, port, port2(v1), port2(v2), len(svc)+port%200)
}

func port2(addr string) string { return port(addr) }

// sidecar starts a client-side proxy for a workload in ns whose outbound
// listener for svcPort is rebound to a loopback port; it returns that port.
func sidecar(t *testing.T, xds, ns, pod string, svcPort int) string {
	local, _ := sidecarWithAdmin(t, xds, ns, pod, svcPort)
	return local
}

// sidecarWithAdmin is sidecar that also returns the admin address.
func sidecarWithAdmin(t *testing.T, xds, ns, pod string, svcPort int) (string, string) {
	t.Helper()
	local, adminAddr := freePort(t), freePort(t)
	startProxy(t, "--xds-address", xds, "--ip", "127.0.0.1", "--pod-name", pod, "--namespace", ns,
		"--labels", "app="+strings.SplitN(pod, "-", 2)[0]+",version=v1", "--admin-address", adminAddr,
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:%d=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", svcPort, local, freePort(t), freePort(t)),
		"--drain-duration", "1s")
	return local, adminAddr
}

func share(got map[string]int, key string) float64 {
	total := 0
	for _, n := range got {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(got[key]) * 100 / float64(total)
}

// TestBillServiceSplit is scenario bill-service: even split without mesh
// rules, 90/10 (±3 over 1,000 calls) with the DestinationRule and
// VirtualService, even again once the VirtualService is deleted.
func TestBillServiceSplit(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := versionServer(t, "v1"), versionServer(t, "v2")
	writeConfig(t, dir, "workloads.yaml", workloads("istio-demo", "bill-service", "service", 9999, v1, v2), nil)
	td := startTrellisd(t, dir, "")
	local, adminAddr := sidecarWithAdmin(t, td.XDSAddr(), "istio-demo", "front-tomcat-v1-abc", 9999)
	const host = "bill-service:9999"
	waitHTTP(t, local, host)

	got := count(t, local, host, 1000, nil)
	if s := share(got, "v1"); s < 42 || s > 58 {
		t.Errorf("without mesh rules: got %.1f%% v1 (%v), want about half", s, got)
	}
	// The source side's Istio metrics name the service and the caller.
	resp, err := http.Get("http://" + adminAddr + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	found := false
	for _, l := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(l, "istio_requests_total{") && strings.Contains(l, `reporter="source"`) &&
			strings.Contains(l, `destination_service="bill-service.istio-demo.svc.cluster.local"`) &&
			strings.Contains(l, `source_workload_namespace="istio-demo"`) && strings.Contains(l, `response_code="200"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no istio_requests_total series for bill-service from the source side in:\n%.2000s", metrics)
	}

	writeConfig(t, dir, "destination-rule.yaml", scenario(t, "bill-service/destination-rule.yaml"), nil)
	writeConfig(t, dir, "virtual-service.yaml", scenario(t, "bill-service/virtual-service.yaml"), nil)
	eventually(t, "90/10 split applied", func() error {
		if s := share(count(t, local, host, 100, nil), "v1"); s < 80 || s == 100 {
			return fmt.Errorf("got %.0f%% v1", s)
		}
		return nil
	})
	got = count(t, local, host, 1000, nil)
	if s := share(got, "v1"); s < 87 || s > 93 {
		t.Errorf("with the VirtualService: got %.1f%% v1 (%v), want 90 ± 3", s, got)
	}

	if err := os.Remove(filepath.Join(dir, "virtual-service.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "even split restored", func() error {
		if s := share(count(t, local, host, 100, nil), "v1"); s > 75 {
			return fmt.Errorf("got %.0f%% v1", s)
		}
		return nil
	})
	got = count(t, local, host, 1000, nil)
	if s := share(got, "v1"); s < 42 || s > 58 {
		t.Errorf("after deleting the VirtualService: got %.1f%% v1 (%v), want about half", s, got)
	}
}

// TestFlaskappDefaultV2 is scenario flaskapp: both versions answer, then
// only v2 with the DestinationRule and virtual-service-default-v2.yaml.
func TestFlaskappDefaultV2(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := versionServer(t, "v1"), versionServer(t, "v2")
	writeConfig(t, dir, "workloads.yaml", workloads("default", "flaskapp", "app", 80, v1, v2), nil)
	td := startTrellisd(t, dir, "")
	local := sidecar(t, td.XDSAddr(), "default", "sleep-5d8c", 80)
	waitHTTP(t, local, "flaskapp")
	if got := count(t, local, "flaskapp", 100, nil); got["v1"] == 0 || got["v2"] == 0 {
		t.Errorf("without rules: got %v, want both versions", got)
	}
	writeConfig(t, dir, "destination-rule.yaml", scenario(t, "flaskapp/destination-rule.yaml"), nil)
	writeConfig(t, dir, "virtual-service-default-v2.yaml", scenario(t, "flaskapp/virtual-service-default-v2.yaml"), nil)
	eventually(t, "default-v2 applied", func() error {
		if got := count(t, local, "flaskapp", 20, nil); got["v2"] != 20 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if got := count(t, local, "flaskapp", 200, nil); got["v2"] != 200 {
		t.Errorf("got %v, want only v2", got)
	}
}

// TestCanaryHeaderAndFault is scenario canary: user: jesse reaches v2,
// everyone else v1; with fault-injection.yaml (its 5 s delay shortened to
// 0.3 s for test speed) jesse's calls are delayed and about half of the
// others get HTTP 500 from the proxy, logged with response flag FI.
func TestCanaryHeaderAndFault(t *testing.T) {
	dir := t.TempDir()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	v1, v2 := versionServer(t, "v1"), versionServer(t, "v2")
	writeConfig(t, dir, "workloads.yaml", workloads("default", "canary", "app", 80, v1, v2), nil)
	writeConfig(t, dir, "canary.yaml", scenario(t, "canary/canary.yaml"), nil)
	td := startTrellisd(t, dir, accessLog)
	local := sidecar(t, td.XDSAddr(), "default", "client-7f9b", 80)
	eventually(t, "canary routing applied", func() error {
		if got := count(t, local, "canary", 10, map[string]string{"user": "jesse"}); got["v2"] != 10 {
			return fmt.Errorf("jesse got %v", got)
		}
		return nil
	})
	if got := count(t, local, "canary", 50, nil); got["v1"] != 50 {
		t.Errorf("others: got %v, want only v1", got)
	}

	// kubectl apply -f fault-injection.yaml replaces the VirtualService; the
	// DestinationRule from canary.yaml stays.
	dr := scenario(t, "canary/canary.yaml")
	dr = dr[strings.Index(dr, "kind: DestinationRule")-len("apiVersion: networking.istio.io/v1beta1\n"):]
	writeConfig(t, dir, "canary.yaml", scenario(t, "canary/fault-injection.yaml", "fixedDelay: 5s", "fixedDelay: 0.3s")+"---\n"+dr, nil)
	eventually(t, "fault injection applied", func() error {
		if got := count(t, local, "canary", 20, nil); got["500 fault filter abort"] == 0 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	start := time.Now()
	got := count(t, local, "canary", 3, map[string]string{"user": "jesse"})
	if took := time.Since(start); got["v2"] != 3 || took < 900*time.Millisecond {
		t.Errorf("jesse: got %v in %v, want 3 × v2 each delayed ≥ 0.3 s", got, took)
	}
	before := len(readLines(accessLog))
	got = count(t, local, "canary", 400, nil)
	aborted := got["500 fault filter abort"]
	if s := share(got, "500 fault filter abort"); s < 38 || s > 62 || aborted+got["v1"] != 400 {
		t.Errorf("others: got %v, want about half 500 fault filter abort, the rest v1", got)
	}
	eventually(t, "access log lines", func() error {
		lines := readLines(accessLog)
		if len(lines) < before+400 {
			return fmt.Errorf("got %d new lines, want 400", len(lines)-before)
		}
		fi := 0
		for _, l := range lines[before:] {
			if strings.Contains(l, " 500 FI ") {
				fi++
			}
		}
		if fi != aborted {
			return fmt.Errorf("got %d lines with 500 FI, want %d:\n%s", fi, aborted, strings.Join(lines[before:before+3], "\n"))
		}
		return nil
	})
	_ = http.StatusOK
}
