package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// twoTier is a front end and one bill-service server, each with a sidecar.
func twoTier() *local.Spec {
	return &local.Spec{
		Namespace: "istio-demo",
		Services: []local.Service{{
			Name: "bill-service", Ports: []local.ServicePort{{Name: "http", Port: 9999, TargetPort: 80}},
			Selector: map[string]string{"service": "bill-service"},
		}},
		Workloads: []local.Workload{
			{Name: "front", Labels: map[string]string{"app": "front", "version": "v1"}},
			{Name: "bill-v1", Labels: map[string]string{"service": "bill-service", "version": "v1"},
				Command: []string{"TRELLIS", "demoapp", "--name", "bill-service-v1", "--listen", ":80"}},
		},
	}
}

func startMesh(tb testing.TB, prefix string, x int) *local.Mesh {
	tb.Helper()
	m, _ := startMeshWith(tb, prefix, x, nil)
	return m
}

// startMeshWith is startMesh with extra Istio resources in trellisd's
// config directory from the start (file name -> YAML); it also returns
// that directory.
func startMeshWith(tb testing.TB, prefix string, x int, files map[string]string) (*local.Mesh, string) {
	tb.Helper()
	return startMeshRunner(tb, prefix, x, files, nil)
}

// startMeshRunner is startMeshWith with a hook that adjusts the runner
// (for instance the CA's certificate lifetime) before the mesh starts.
func startMeshRunner(tb testing.TB, prefix string, x int, files map[string]string, adjust func(*local.Runner)) (*local.Mesh, string) {
	tb.Helper()
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		tb.Fatal(err)
	}
	spec := twoTier()
	spec.ExpandCommand(bins.Trellis)
	plan, err := local.NewPlan(spec, local.Options{
		Prefix:    prefix,
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", x)),
		VIPSubnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.1.0/24", x)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	state := tb.TempDir()
	// The sidecars (uid 1337) read the published trust bundle under it.
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := filepath.Join(state, "config")
	r := bins.MeshRunner(plan, cfg, state, nil)
	if adjust != nil {
		adjust(r)
	}
	if err := mkdir(cfg); err != nil {
		tb.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := r.Up(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := m.Down(context.Background()); err != nil {
			tb.Errorf("down: %v", err)
		}
	})
	if err := m.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return m, cfg
}

// interceptedClient dials from inside a workload's namespace as root: the
// connections are captured by the workload's sidecar like the app's.
func interceptedClient(m *local.Mesh, workload string) *http.Client {
	w, _ := m.Workload(workload)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, w.Netns, network, addr)
		},
	}}
}

// TestCallByNameThroughBothSidecars: the front end's app (uid 65534) calls
// bill-service:9999 by name; the request passes the front end's sidecar
// (outbound, reporter=source) and the server's (inbound,
// reporter=destination), as both proxies' Istio metrics show.
func TestCallByNameThroughBothSidecars(t *testing.T) {
	requireMesh(t)
	m := startMesh(t, "t6m", 250)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bins, _ := local.FindBinaries(meshbin.Dir())
	var body []byte
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		body, err = m.Exec(ctx, "front", bins.Trellis, "demoapp", "load", "--calls", "5", "http://bill-service:9999/")
		if err == nil && strings.Contains(string(body), `"this is bill-service-v1":5`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calling bill-service:9999 by name from the front end: got %s, %v; want 5 answers from bill-service-v1", body, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	metric := func(workload, reporter string, want ...string) string {
		resp, err := m.HTTPClient(workload).Get("http://127.0.0.1:15000/stats/prometheus")
		if err != nil {
			t.Fatalf("%s admin: %v", workload, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "istio_requests_total{") || !strings.Contains(l, `reporter="`+reporter+`"`) {
				continue
			}
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return l
			}
		}
		t.Errorf("%s: no istio_requests_total with reporter=%q and %q in:\n%s", workload, reporter, want, b)
		return ""
	}
	// The client's sidecar saw the call to bill-service, the server's saw it
	// come from the front end; both answered 200.
	metric("front", "source", `destination_service="bill-service.istio-demo.svc.cluster.local"`, `response_code="200"`)
	metric("bill-v1", "destination", `source_app="front"`, `destination_version="v1"`, `destination_service="bill-service.istio-demo.svc.cluster.local"`, `response_code="200"`)
}

// BenchmarkTwoHopIntercepted measures one HTTP request from the front
// end's namespace to bill-service: "direct" goes namespace -> bridge -> app
// with no sidecar and no rules (the floor), "intercepted" goes through real
// interception and both sidecars: iptables -> sidecar (15001) -> bridge ->
// iptables -> server sidecar (15006) -> app, over mesh mTLS between the
// sidecars (auto mTLS); "intercepted-plaintext" is the same with a
// DestinationRule tls DISABLE. Keep-alive, 16 in flight.
func BenchmarkTwoHopIntercepted(b *testing.B) {
	if meshbin.Dir() == "" {
		b.Skip("needs root and the built binaries")
	}
	b.Run("direct", func(b *testing.B) {
		m := startPlain(b, "t6p", 252)
		w, _ := m.Workload("bill-v1")
		benchGet(b, interceptedClient(m, "front"), "http://"+w.IP.String()+":80/")
	})
	b.Run("intercepted", func(b *testing.B) {
		m := startMesh(b, "t6b", 251)
		// The in-process client resolves with the host's /etc/hosts: use the VIP.
		benchGet(b, interceptedClient(m, "front"), "http://"+m.Plan.Services[0].VIP.String()+":9999/")
	})
	b.Run("intercepted-plaintext", func(b *testing.B) {
		m, _ := startMeshWith(b, "t6d", 245, map[string]string{"plaintext.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bill-service, namespace: istio-demo}
spec:
  host: bill-service.istio-demo.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
`})
		benchGet(b, interceptedClient(m, "front"), "http://"+m.Plan.Services[0].VIP.String()+":9999/")
	})
}

func benchGet(b *testing.B, c *http.Client, url string) {
	get := func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for deadline := time.Now().Add(30 * time.Second); get() != nil; {
		if time.Now().After(deadline) {
			b.Fatalf("%s not reachable: %v", url, get())
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// startPlain runs the same workloads without sidecars or rules.
func startPlain(tb testing.TB, prefix string, x int) *local.Mesh {
	tb.Helper()
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		tb.Fatal(err)
	}
	spec := twoTier()
	spec.ExpandCommand(bins.Trellis)
	plan, err := local.NewPlan(spec, local.Options{
		Prefix:    prefix,
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", x)),
		VIPSubnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.1.0/24", x)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	r := &local.Runner{Plan: plan, StateDir: tb.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := r.Up(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Down(context.Background()) })
	if err := m.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return m
}
