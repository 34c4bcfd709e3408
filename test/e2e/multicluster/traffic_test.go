package multicluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/local/netns"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// worker serves "NAME" on IP:8080 inside a network namespace of its own
// (a pod: the API server refuses loopback endpoint addresses), reached
// from the host through a veth whose host side is GW (IP's /24, .1).
func worker(t *testing.T, ctx context.Context, ns, ip, name string) (stop func()) {
	t.Helper()
	return workerPort(t, ctx, ns, ip, 8080, name)
}

// workerOn is worker on the seed's worker port, 8081.
func workerOn(t *testing.T, ns, ip, name string) {
	t.Helper()
	workerPort(t, kubetest.Context(t), ns, ip, 8081, name)
}

func workerPort(t *testing.T, ctx context.Context, ns, ip string, port int, name string) (stop func()) {
	t.Helper()
	_ = netns.Delete(ctx, ns)
	if err := netns.Add(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(context.Background(), ns) })
	gw := ip[:strings.LastIndexByte(ip, '.')] + ".1"
	host, peer := ns+"-h", ns+"-p"
	for _, args := range [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns},
		{"addr", "add", gw + "/24", "dev", host},
		{"link", "set", host, "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", peer},
		{"-n", ns, "link", "set", peer, "up"},
		{"-n", ns, "route", "add", "default", "via", gw},
	} {
		if err := netns.IP(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	l, err := netns.Listen(ns, "tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return func() { srv.Close() }
}

// sidecar runs trellis-proxy as frontend's sidecar in cluster clusterID
// (node metadata as the injector sets it: ISTIO_META_CLUSTER_ID,
// ISTIO_META_NETWORK), its outbound 8080 listener bound on a loopback port
// instead of behind iptables. It returns the outbound, admin and
// Prometheus addresses.
func sidecar(t *testing.T, xds, clusterID, network, labels string) (outbound, admin, prom string) {
	t.Helper()
	return sidecarIn(t, xds, clusterID, network, labels, appNS, 8080)
}

// seedSidecar is seed 004's frontend sidecar: namespace default, cluster1,
// the worker-service port 80 bound on loopback.
func seedSidecar(t *testing.T, xds string) (outbound, admin, prom string) {
	t.Helper()
	return sidecarIn(t, xds, "cluster1", "network1", "app=frontend", "default", 80)
}

func sidecarIn(t *testing.T, xds, clusterID, network, labels, ns string, port int) (outbound, admin, prom string) {
	t.Helper()
	outbound, admin, prom = freeAddr(t), freeAddr(t), freeAddr(t)
	rebind := fmt.Sprintf("0.0.0.0:%d=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", port, outbound, freeAddr(t), freeAddr(t))
	logf, err := os.Create(filepath.Join(t.TempDir(), "proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "trellis-proxy"), "--xds-address", xds, "--ip", "127.0.0.1", "--pod-name", "frontend-1",
		"--namespace", ns, "--labels", labels, "--admin-address", admin, "--ready-address", "", "--prometheus-address", prom,
		"--merged-address", "", "--rebind", rebind, "--drain-duration", "1s")
	cmd.Env = append(os.Environ(), "ISTIO_META_CLUSTER_ID="+clusterID, "ISTIO_META_NETWORK="+network, "CA_ADDR=")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("trellis-proxy log:\n%s", b)
		}
	})
	return outbound, admin, prom
}

// call sends one request for the worker to a sidecar's outbound listener
// and returns the body (the answering worker's name).
func call(outbound string) (string, error) { return callHost(outbound, host+":8080") }

// callHost is call with another Host header.
func callHost(outbound, hostHeader string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+outbound+"/", nil)
	req.Host = hostHeader
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// TestCrossClusterTraffic sends real requests from a trellis-proxy in
// cluster1 to seed 004's worker, whose primary pod is in cluster1 and
// burst pod in cluster2 (joined by cluster2's remote secret): both
// answer, `trellis proxy-config endpoint` lists both with their cluster,
// and the proxy's istio_requests_total carries source_cluster and
// destination_cluster.
func TestCrossClusterTraffic(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the workers run in network namespaces")
	}
	ctx := kubetest.Context(t)
	primary, burst := "10.240.1.10", "10.241.1.10"
	worker(t, ctx, "mcw-primary", primary, "primary")
	worker(t, ctx, "mcw-burst", burst, "burst")
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startCluster(t, ctx, "cluster2", "network1")
	runWorker(t, ctx, c1.env.Clients, "region1.zone1", map[string]string{"primary": primary})
	runWorker(t, ctx, c2.env.Clients, "region2.zone1", map[string]string{"burst": burst})
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))

	outbound, admin, prom := sidecar(t, c1.xds, "cluster1", "network1", "app=frontend")
	get := func() (string, error) { return call(outbound) }
	seen := map[string]int{}
	waitFor(t, "both clusters' workers answering through the sidecar", func() bool {
		if b, err := get(); err == nil {
			seen[b]++
		}
		return seen["primary"] > 0 && seen["burst"] > 0
	})
	const n = 200
	got := map[string]int{}
	for i := 0; i < n; i++ {
		b, err := get()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got[b]++
	}
	t.Logf("%d requests: primary (cluster1) %d, burst (cluster2) %d", n, got["primary"], got["burst"])
	if got["primary"] == 0 || got["burst"] == 0 || got["primary"]+got["burst"] != n {
		t.Errorf("split over %d requests: got %v, want both clusters' workers", n, got)
	}

	// trellis proxy-config endpoint, as a user would run it.
	cl := translate.OutboundClusterName(8080, "", host)
	out, err := exec.Command(filepath.Join(binDir, "trellis"), "proxy-config", "endpoint", admin, "--cluster", cl).CombinedOutput()
	if err != nil {
		t.Fatalf("trellis proxy-config endpoint: %v\n%s", err, out)
	}
	for _, want := range []string{primary + ":8080", burst + ":8080"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("proxy-config endpoint: got\n%s\nwant %s", out, want)
		}
	}

	// The source reporter's counters, per destination cluster.
	counts := scrape(t, prom)
	c1n, c2n := counts["cluster1"], counts["cluster2"]
	t.Logf("istio_requests_total{reporter=source,source_cluster=cluster1}: destination_cluster=cluster1 %d, cluster2 %d", c1n, c2n)
	if c1n < got["primary"] || c2n < got["burst"] {
		t.Errorf("istio_requests_total by destination_cluster: got cluster1 %d cluster2 %d, want at least %d and %d", c1n, c2n, got["primary"], got["burst"])
	}
}

// scrape sums istio_requests_total{reporter="source",source_cluster="cluster1"}
// by destination_cluster.
func scrape(t *testing.T, prom string) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + prom + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "istio_requests_total{") || !strings.Contains(line, `reporter="source"`) || !strings.Contains(line, `source_cluster="cluster1"`) {
			continue
		}
		i := strings.Index(line, `destination_cluster="`)
		if i < 0 {
			continue
		}
		rest := line[i+len(`destination_cluster="`):]
		dc := rest[:strings.IndexByte(rest, '"')]
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[dc] += int(v)
	}
	return out
}
