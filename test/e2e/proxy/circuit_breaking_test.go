package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowApp answers every request after a short pause, so that concurrent
// callers overlap on the upstream connection.
func slowApp(t *testing.T, pause time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(pause)
		io.WriteString(w, "httpbin")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// load is fortio's closed loop (-qps 0): conns callers, each on its own
// keep-alive connection, send n requests in total as fast as answers come;
// it returns the count per status (0 for a failed call).
func load(t *testing.T, addr, host string, conns, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		share := n / conns
		if c < n%conns {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for i := 0; i < share; i++ {
				req, _ := http.NewRequest("GET", "http://"+addr+"/get", nil)
				req.Host = host
				code := 0
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				got[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

var pendingOverflowStat = regexp.MustCompile(`(?m)^cluster\.outbound\|8000\|\|httpbin\.default\.svc\.cluster\.local\.upstream_rq_pending_overflow: (\d+)$`)

func pendingOverflow(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := pendingOverflowStat.FindSubmatch(b)
	if m == nil {
		t.Fatalf("/stats has no upstream_rq_pending_overflow for httpbin:\n%.3000s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestCircuitBreaking is Istio's circuit-breaking task: httpbin on port
// 8000 with the task's DestinationRule (tcp.maxConnections 1,
// http.http1MaxPendingRequests 1, http.maxRequestsPerConnection 1, and its
// outlierDetection), loaded through the caller's sidecar like fortio
// -qps 0. One connection never trips the breaker (a request waits in the
// pending queue while the previous connection closes); three concurrent
// connections get a share of immediate 503s with response flag UO, which
// upstream_rq_pending_overflow counts in /stats.
func TestCircuitBreaking(t *testing.T) {
	dir := t.TempDir()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	app := slowApp(t, 20*time.Millisecond)
	writeConfig(t, dir, "httpbin.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  addresses: [240.240.3.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: {{PORT}}}
  labels: {app: httpbin}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
`, map[string]string{"PORT": port(app)})
	td := startTrellisd(t, dir, accessLog)
	local, admin := sidecarWithAdmin(t, td.XDSAddr(), "default", "fortio-1", 8000)
	const host = "httpbin:8000"
	eventually(t, "httpbin reachable with its circuit breaker", func() error {
		resp, err := http.Get("http://" + admin + "/clusters")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "outbound|8000||httpbin.default.svc.cluster.local::default_priority::max_pending_requests::1\n") {
			return fmt.Errorf("the DestinationRule's thresholds have not arrived")
		}
		if got := load(t, local, host, 1, 1); got[200] != 1 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})

	if got := load(t, local, host, 1, 20); got[200] != 20 {
		t.Errorf("1 connection, 20 calls: got %v, want all 200", got)
	}
	if n := pendingOverflow(t, admin); n != 0 {
		t.Errorf("after 1 connection: upstream_rq_pending_overflow %d, want 0", n)
	}

	before := len(readLines(accessLog))
	got := load(t, local, host, 3, 30)
	if got[200]+got[503] != 30 || got[503] == 0 || got[200] == 0 {
		t.Fatalf("3 connections, 30 calls: got %v, want a share of 503 and the rest 200", got)
	}
	if n := pendingOverflow(t, admin); n != got[503] {
		t.Errorf("upstream_rq_pending_overflow: got %d, want the %d overflowed calls", n, got[503])
	}
	eventually(t, "access log lines", func() error {
		lines := readLines(accessLog)
		if len(lines) < before+30 {
			return fmt.Errorf("got %d new lines, want 30", len(lines)-before)
		}
		uo := 0
		for _, l := range lines[before:] {
			if strings.Contains(l, " 503 UO upstream_reset_before_response_started{overflow};circuit_breaker=max_pending_requests;cluster=outbound|8000||httpbin.default.svc.cluster.local ") {
				uo++
			}
		}
		if uo != got[503] {
			return fmt.Errorf("got %d lines with 503 UO, want %d:\n%s", uo, got[503], strings.Join(lines[before:], "\n"))
		}
		return nil
	})
	t.Logf("3 connections, 30 calls: %v (%.0f%% overflowed)", got, float64(got[503])*100/30)
}
