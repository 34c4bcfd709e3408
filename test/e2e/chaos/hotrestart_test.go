package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// Case 6 runs on its own mesh and subnet (10.184.0.0/24, VIPs
// 10.184.1.0/24), with the same spec as TestChaos.
const (
	hotPrefix  = "t84h"
	hotSubnetX = 184
)

// TestChaosHotRestart is case 6: sidecars hot-restarted under load, as an
// upgrade of the sidecar binary does it (Mesh.HotRestartProxy: the next
// --restart-epoch, which takes the running proxy's sockets — 15001,
// 15006, 15000, 15021, 15090, 15020 — warms its config from trellisd
// and its certificate from the CA, then takes over while the old one
// drains and exits). 6a restarts the client's sidecar twice, the second
// time from a copy of the binary at another path (an upgrade); the
// servers' sidecars count what reaches them. 6b upgrades the sidecars of
// bill-v1 and bill-v2; the client's sidecar counts. Both must lose no
// request.
func TestChaosHotRestart(t *testing.T) {
	requireMesh(t)
	d := caseDurations()
	ms := startMeshOn(t, hotPrefix, hotSubnetX)
	ms.apply("bill", baseConfig())
	front, _ := ms.m.Workload("front")
	url := "http://" + ms.m.Plan.Services[0].VIP.String() + ":9999/"
	grpcAddr := fmt.Sprintf("%s:%d", ms.m.Plan.Services[0].VIP, grpcPort)
	ms.waitAnswers(front.Netns, url, "this is bill-service-v1", "this is bill-service-v2")
	ms.waitGRPCAnswers(front.Netns, grpcAddr, "this is bill-service-v1", "this is bill-service-v2")
	upgraded := stageUpgrade(t, ms.bins.Proxy)
	t.Logf("load: %d rps of HTTP/1.1 GET %s from %s through both sidecars; windows %s/%s/%s; upgrade binary %s",
		*rps, url, front.Netns, d.before, d.during, d.after, upgraded)

	var servers []string
	for _, w := range ms.m.Plan.Workloads {
		if w.Name != "front" {
			servers = append(servers, w.Name)
		}
	}
	hot := func(t *testing.T, name, bin string) {
		t.Helper()
		old := ms.process("proxy", name).PID
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd, err := ms.m.HotRestartProxy(ctx, name, local.HotRestart{Binary: bin, DrainTime: 2 * time.Second, ParentShutdownTime: 5 * time.Second})
		if err != nil {
			for _, f := range []string{name + ".proxy.log", name + ".proxy.*.log"} {
				logs, _ := filepath.Glob(filepath.Join(ms.m.LogDir(), f))
				for _, l := range logs {
					b, _ := os.ReadFile(l)
					t.Logf("%s:\n%s", filepath.Base(l), tail(string(b), 40))
				}
			}
			t.Fatalf("hot restart of %s's sidecar: %v", name, err)
		}
		what := "same binary"
		if bin != "" {
			what = "upgrade: " + bin
		}
		t.Logf("%s's sidecar: pid %d -> %d (%s); the old one exited %s after the new one started",
			name, old, cmd.Process.Pid, what, time.Since(t0).Round(time.Millisecond))
		if !zombie(old) {
			t.Errorf("%s's old sidecar (pid %d) still runs", name, old)
		}
	}
	// Upgrade between the restarts: each window's restarts are spread over
	// it, and the load keeps running after the last one.
	spread := func(n int) time.Duration { return d.during / time.Duration(n+1) }

	serverCounts := counts{"servers' sidecars (reporter=destination)", func() map[string]float64 { return ms.serverRequests(servers) }}
	ms.runCase(t, "hot-restart-client-sidecar", front.Netns, url, grpcAddr, d, true, true, serverCounts, func(t *testing.T, l *load) {
		time.Sleep(spread(2))
		hot(t, "front", "")
		time.Sleep(spread(2))
		hot(t, "front", upgraded)
		time.Sleep(spread(2))
	})
	ms.runCase(t, "hot-restart-server-sidecars", front.Netns, url, grpcAddr, d, true, true, ms.clientCounts(), func(t *testing.T, l *load) {
		time.Sleep(spread(2))
		hot(t, "bill-v1", upgraded)
		time.Sleep(spread(2))
		hot(t, "bill-v2", upgraded)
		time.Sleep(spread(2))
	})
	// The new generations answer their admin API on the inherited 15000,
	// and took over with their workload certificate (mTLS between the
	// sidecars from their first connection).
	for _, w := range []string{"front", "bill-v1"} {
		resp, err := ms.m.HTTPClient(w).Get("http://127.0.0.1:15000/certs")
		if err != nil {
			t.Fatalf("%s admin: %v", w, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "spiffe://cluster.local/ns/"+namespace+"/sa/") {
			t.Errorf("%s /certs after the hot restart: no workload certificate:\n%s", w, b)
		}
	}
	for _, w := range []string{"front", "bill-v1"} {
		resp, err := ms.m.HTTPClient(w).Get("http://127.0.0.1:15000/stats?filter=server.hot_restart_epoch")
		if err != nil {
			t.Fatalf("%s admin: %v", w, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]string{"front": "server.hot_restart_epoch: 2", "bill-v1": "server.hot_restart_epoch: 1"}[w]
		if !strings.Contains(string(b), want) {
			t.Errorf("%s admin /stats: got %q, want %q", w, b, want)
		}
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stageUpgrade copies trellis-proxy to another path uid 1337 can run, as
// an upgrade installs a new binary next to the running one.
func stageUpgrade(t *testing.T, bin string) string {
	t.Helper()
	dir := filepath.Join(meshbin.Dir(), "upgrade")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "trellis-proxy")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
