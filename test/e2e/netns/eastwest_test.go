package netns

import (
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// crossNetworkGateway is Istio's expose-services Gateway: every east-west
// gateway routes mesh mTLS for *.local by SNI.
const crossNetworkGateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`

// seed004Networks is seed 004 on two networks of one local mesh: the
// frontend and the primary worker on network1, the burst worker on
// network2, an east-west gateway in each.
func seed004Networks(trellis string) *local.Spec {
	worker := func(name, network, typ string) local.Workload {
		return local.Workload{Name: name, Network: network, ServiceAccount: "worker",
			Labels:  map[string]string{"app": "worker", "cluster-type": typ},
			Command: []string{trellis, "demoapp", "--name", name, "--listen", ":8081"}}
	}
	return &local.Spec{
		Networks: []local.Network{{Name: "network1", Subnet: "10.186.1.0/24"}, {Name: "network2", Subnet: "10.187.1.0/24"}},
		Services: []local.Service{{Name: "worker-service", Ports: []local.ServicePort{{Name: "http", Port: 80, TargetPort: 8081}},
			Selector: map[string]string{"app": "worker"}}},
		Workloads: []local.Workload{
			{Name: "frontend", Network: "network1", Labels: map[string]string{"app": "frontend"}},
			worker("worker-primary", "network1", "primary-cluster"),
			worker("worker-burst", "network2", "burst-cluster"),
			{Name: "eastwest-network1", Network: "network1", EastWestGateway: true, Labels: map[string]string{"istio": "eastwestgateway"}},
			{Name: "eastwest-network2", Network: "network2", EastWestGateway: true, Labels: map[string]string{"istio": "eastwestgateway"}},
		},
	}
}

// TestSeed004AcrossNetworks: one trellisd, two bridges with no route
// between them (network1 10.186.1.0/24, network2 10.187.1.0/24), an
// east-west gateway in each joined to the other's bridge. The frontend
// on network1 cannot reach the burst worker's address at all; its calls
// to worker-service, split 50/50 by seed 004's VirtualService, reach the
// burst worker through network2's gateway (its SNI chain counts the bytes)
// under STRICT mTLS. The seed's burst.yaml moves everything to burst,
// natural.yaml everything back to primary (and the gateway carries no
// more bytes).
func TestSeed004AcrossNetworks(t *testing.T) {
	requireMesh(t)
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := local.NewPlan(seed004Networks(bins.Trellis), local.Options{Prefix: "tew", VIPSubnet: netip.MustParsePrefix("10.186.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(state, "config")
	if err := mkdir(cfg); err != nil {
		t.Fatal(err)
	}
	put := func(name string, body []byte) {
		tmp := filepath.Join(cfg, "."+name+".tmp")
		if err := os.WriteFile(tmp, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(cfg, name)); err != nil {
			t.Fatal(err)
		}
	}
	put("gateway.yaml", []byte(crossNetworkGateway))
	// As kubectl apply of the seed's files: worker-virtualservice.yaml's
	// DestinationRule stays while burst.yaml and natural.yaml replace its
	// VirtualService.
	for _, doc := range strings.Split(string(seed004File(t, "worker-virtualservice.yaml")), "\n---\n") {
		if strings.Contains(doc, "kind: DestinationRule") {
			put("worker-destinationrule.yaml", []byte(doc))
		} else {
			put("worker-virtualservice.yaml", []byte(doc))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	m, err := bins.MeshRunner(plan, cfg, state, nil).Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	burst, _ := m.Workload("worker-burst")
	gw2, _ := m.Workload("eastwest-network2")
	logs := func() {
		for _, f := range []string{"frontend.proxy.log", "eastwest-network2.proxy.log", "worker-burst.proxy.log", "trellisd.log"} {
			b, _ := os.ReadFile(filepath.Join(m.LogDir(), f))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s:\n%s", f, b)
		}
		t.Logf("frontend clusters:\n%s", grepLines(adminGet(m, "frontend", "/clusters"), "worker-service", "::"))
	}

	// No path from network1 to network2's pods but the gateway.
	if c, err := netns.Dial(ctx, "tew-frontend", "tcp", netip.AddrPortFrom(burst.IP, 8081).String()); err == nil {
		c.Close()
		t.Fatalf("the frontend's namespace reached the burst pod %s directly", burst.IP)
	}
	load := func(calls int) demoapp.Result {
		t.Helper()
		body, err := m.Exec(ctx, "frontend", bins.Trellis, "demoapp", "load", "--calls", strconv.Itoa(calls), "--concurrency", "4",
			"http://worker-service/")
		var r demoapp.Result
		if err == nil {
			err = json.Unmarshal(body, &r)
		}
		if err != nil {
			logs()
			t.Fatalf("load: %v: %s", err, body)
		}
		return r
	}
	// The bytes network2's gateway received on burst's SNI chain (the
	// frontend's sidecar keeps its connections to the gateway open, so
	// new calls show as bytes rather than connections).
	burstCx := func() int {
		return stat(t, m, "eastwest-network2", "tcp.outbound_.80_.burst_.worker-service.default.svc.cluster.local.downstream_cx_rx_bytes_total")
	}
	const primaryAnswer, burstAnswer = "this is worker-primary", "this is worker-burst"
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := load(10)
		if r.Answers[primaryAnswer] > 0 && r.Answers[burstAnswer] > 0 && r.Status[200] == 10 {
			break
		}
		if time.Now().After(deadline) {
			logs()
			t.Fatalf("within 60s the frontend never got both workers: %+v", r)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// 50/50 through the gateway.
	before := burstCx()
	r := load(200)
	t.Logf("50/50: %v", r.Answers)
	if r.Status[200] != 200 || r.Answers[primaryAnswer] < 50 || r.Answers[burstAnswer] < 50 {
		logs()
		t.Fatalf("50/50: %+v", r)
	}
	if after := burstCx(); after <= before {
		logs()
		t.Fatalf("gateway %s carried no burst bytes (%d, then %d)", gw2.Name, before, after)
	}
	if n := stat(t, m, "eastwest-network2", "tcp.outbound_.80_.primary_.worker-service.default.svc.cluster.local.downstream_cx_total"); n != 0 {
		t.Fatalf("network2's gateway carried %d primary connections", n)
	}

	// The seed's controller files move the traffic.
	for _, step := range []struct{ file, want string }{{"burst.yaml", burstAnswer}, {"natural.yaml", primaryAnswer}} {
		put("worker-virtualservice.yaml", seed004File(t, step.file))
		deadline := time.Now().Add(45 * time.Second)
		for {
			r := load(20)
			if r.Answers[step.want] == 20 {
				break
			}
			if time.Now().After(deadline) {
				logs()
				t.Fatalf("%s: calls not all answered by %q: %+v", step.file, step.want, r)
			}
			time.Sleep(300 * time.Millisecond)
		}
		before := burstCx()
		r := load(100)
		t.Logf("%s: %v", step.file, r.Answers)
		if r.Answers[step.want] != 100 {
			t.Fatalf("%s: %+v", step.file, r)
		}
		after := burstCx()
		if step.want == burstAnswer && after <= before {
			t.Fatalf("%s: the gateway carried no bytes (%d, then %d)", step.file, before, after)
		}
		if step.want == primaryAnswer && after != before {
			t.Fatalf("%s: the gateway carried %d bytes for primary", step.file, after-before)
		}
	}
}

// seed004File reads one of seed 004's files, unchanged, from
// shared/scenarios/burst beside the repository (or beside the directory
// of worktrees holding it).
func seed004File(t *testing.T, name string) []byte {
	t.Helper()
	dir, _ := filepath.Abs(".")
	for d := dir; filepath.Dir(d) != d; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "shared", "scenarios", "burst", name)); err == nil {
			return b
		}
	}
	t.Skipf("scenario file %s missing; the shared scenarios sit beside the repository", name)
	return nil
}

// adminGet asks a workload's proxy admin API (127.0.0.1:15000 in its
// namespace).
func adminGet(m *local.Mesh, workload, path string) string {
	resp, err := m.HTTPClient(workload).Get("http://127.0.0.1:15000" + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stat reads one counter of a workload's proxy.
func stat(t *testing.T, m *local.Mesh, workload, name string) int {
	t.Helper()
	for _, line := range strings.Split(adminGet(m, workload, "/stats"), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s %s: %q", workload, name, v)
			}
			return n
		}
	}
	return 0
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok && (strings.Contains(l, "cx_total") || strings.Contains(l, "health_flags")) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
