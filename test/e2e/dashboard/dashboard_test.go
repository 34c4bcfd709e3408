package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demo"
	"github.com/trellis-mesh/trellis/internal/local"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

func TestMain(m *testing.M) { os.Exit(meshbin.Main(m)) }

// webDir holds the UI's npm packages, playwright-core among them.
const webDir = "../../../internal/dashboard/web"

func requireBrowserMesh(t *testing.T) {
	t.Helper()
	meshbin.Require(t)
	for _, bin := range []string{"node", "/usr/bin/chromium"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("needs %s (scripts/setup.sh installs it): %v", bin, err)
		}
	}
	if _, err := os.Stat(filepath.Join(webDir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("needs playwright-core in %s/node_modules (scripts/setup.sh runs npm ci there): %v", webDir, err)
	}
}

func artifactDir(t *testing.T) string {
	dir := os.Getenv("TRELLIS_ARTIFACTS")
	if dir == "" {
		dir, _ = filepath.Abs("artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type browserSummary struct {
	Edges []struct {
		Source, Target string
		RPS            float64
		Label          string
	} `json:"edges"`
	Configured  [][]any  `json:"configured"`
	Measured    [][]any  `json:"measured"`
	Proxies     []string `json:"proxies"`
	Errors      []string `json:"errors"`
	Findings    []string `json:"findings"`
	Screenshots []string `json:"screenshots"`
	PageErrors  []string `json:"pageErrors"`
	Error       string   `json:"error"`
}

// browse runs the Playwright script against the dashboard.
func browse(t *testing.T, ctx context.Context, url, expect string) browserSummary {
	t.Helper()
	script, _ := filepath.Abs(filepath.Join(webDir, "e2e", "dashboard.mjs"))
	cmd := exec.CommandContext(ctx, "node", script, "--url", url, "--expect", expect, "--out", artifactDir(t), "--timeout", "100")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var s browserSummary
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &s); jerr != nil {
		t.Fatalf("browser (%s): %v; output:\n%s\n%s", expect, err, stdout.String(), stderr.String())
	}
	t.Logf("browser (%s): %s", expect, lines[len(lines)-1])
	if err != nil {
		t.Fatalf("browser (%s): %v: %s %v\n%s", expect, err, s.Error, s.PageErrors, stderr.String())
	}
	return s
}

// TestDashboardInBrowser runs the bill-service seed in a local mesh, sends
// traffic through the front end's sidecar, and checks in Chromium that the
// graph shows front-tomcat-v1 -> bill-service -> v1 and v2 with traffic,
// then that applying the seed's DestinationRule and VirtualService shows
// the configured 90/10 split and a measured one close to it. Screenshots
// of both themes are saved as artifacts. Last, the seed's fault injection
// for canary must show the subsets it names as a finding until canary's
// DestinationRule exists, then the aborts with their reason.
func TestDashboardInBrowser(t *testing.T) {
	requireBrowserMesh(t)
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		t.Fatal(err)
	}
	spec, err := demo.Spec(bins.Trellis)
	if err != nil {
		t.Fatal(err)
	}
	// canary-v1 answers 30 % of its calls with 503: errors with a reason.
	for i := range spec.Workloads {
		if spec.Workloads[i].Name == "canary-v1" {
			spec.Workloads[i].Command = append(spec.Workloads[i].Command, "--fail-percent", "30", "--fail-status", "503")
		}
	}
	plan, err := local.NewPlan(spec, local.Options{Prefix: "t10d",
		Subnet: netip.MustParsePrefix("10.252.0.0/24"), VIPSubnet: netip.MustParsePrefix("10.253.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cfg := filepath.Join(state, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	url := local.DashboardURL(plan.HostIP.String())

	// `trellis dashboard` finds the local mesh's dashboard and checks it answers.
	out, err := exec.CommandContext(ctx, bins.Trellis, "dashboard", "--prefix", "t10d", "--state-dir", state).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != url {
		t.Fatalf("trellis dashboard: got %q, %v; want %s", out, err, url)
	}

	// Steady traffic from the front end's app, through its sidecar.
	lctx, stopLoad := context.WithCancel(ctx)
	var loads []chan struct{}
	load := func(url string) {
		done := make(chan struct{})
		loads = append(loads, done)
		go func() {
			defer close(done)
			for lctx.Err() == nil {
				m.Exec(lctx, "front-tomcat-v1", bins.Trellis, "demoapp", "load", "--calls", "100", "--concurrency", "2", "--timeout", "10s", url)
				select {
				case <-lctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	defer func() {
		stopLoad()
		for _, done := range loads {
			<-done
		}
	}()
	load("http://bill-service:9999/")

	g := browse(t, ctx, url, "graph")
	for _, e := range g.Edges {
		if e.RPS <= 0 || !strings.Contains(e.Label, "rps") || !strings.Contains(e.Label, "p99") {
			t.Errorf("edge %s -> %s: got label %q at %v req/s, want a rate, error share and p99", e.Source, e.Target, e.Label, e.RPS)
		}
	}

	// The seed's rules, unchanged, into the watched directory.
	for _, f := range []string{"destination-rule.yaml", "virtual-service.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../../internal/demo/scenarios", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := browse(t, ctx, url, "split")
	if len(s.Configured) != 2 || fmt.Sprint(s.Configured) != "[[v1 90] [v2 10]]" {
		t.Errorf("configured split: got %v, want [[v1 90] [v2 10]]", s.Configured)
	}
	if len(s.Proxies) != 2 {
		t.Errorf("bill-service's proxies: got %q, want bill-service-v1 and -v2", s.Proxies)
	}
	for _, p := range s.Proxies {
		if !strings.Contains(p, "SYNCED") {
			t.Errorf("proxy row %q: want SYNCED", p)
		}
	}
	for _, f := range s.Screenshots {
		if st, err := os.Stat(f); err != nil || st.Size() < 10_000 {
			t.Errorf("screenshot %s: %v (size %v)", f, err, st)
		}
	}
	t.Logf("measured split %v; screenshots %v", s.Measured, s.Screenshots)

	// The seed's fault injection for canary, first without its
	// DestinationRule: the subsets it names are a finding.
	b, err := os.ReadFile("../../../internal/demo/scenarios/fault-injection.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "fault-injection.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	f := browse(t, ctx, url, "findings")
	if !strings.Contains(strings.Join(f.Findings, "\n"), `subset "v1" of host "canary.default.svc.cluster.local" is not defined`) {
		t.Errorf("canary's findings: got %q, want the undefined subset v1", f.Findings)
	}
	// With the DestinationRule the calls reach canary-v1 (half of them;
	// the caller's sidecar aborts the others), which fails 30 %: recent
	// errors show the 503s with their reason, on both sides.
	b, err = os.ReadFile("../../../internal/demo/scenarios/canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, dr, ok := strings.Cut(string(b), "\n---\n")
	if !ok || !strings.Contains(dr, "kind: DestinationRule") {
		t.Fatalf("canary.yaml: want a VirtualService, ---, then the DestinationRule; got:\n%s", b)
	}
	if err := os.WriteFile(filepath.Join(cfg, "canary-destination-rule.yaml"), []byte(dr), 0o644); err != nil {
		t.Fatal(err)
	}
	load("http://canary.default/")
	e := browse(t, ctx, url, "errors")
	if all := strings.Join(e.Errors, "\n"); !strings.Contains(all, "503 the upstream answered 503") || !strings.Contains(all, "destination proxy") || !strings.Contains(all, "source proxy") {
		t.Errorf("canary's recent errors: got %q, want canary-v1's 503s with their reason, seen by both proxies", e.Errors)
	}
	for _, f := range e.Findings {
		if strings.Contains(f, "is not defined") {
			t.Errorf("finding %q: the DestinationRule defines the subsets now", f)
		}
	}
}
