package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demo"
	"github.com/trellis-mesh/trellis/internal/local"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// TestDemo runs `trellis demo` as a user would and checks its summary
// against what the seeds show, then that nothing is left behind.
func TestDemo(t *testing.T) {
	requireMesh(t)
	const prefix = "t6d"
	state := t.TempDir()
	report := filepath.Join(t.TempDir(), "report.json")
	before := hostNAT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(meshbin.Dir(), "trellis"), "demo", "--bin-dir", meshbin.Dir(),
		"--calls", "1000", "--prefix", prefix, "--state-dir", state, "--json", report,
		"--subnet", "10.246.0.0/24", "--vip-subnet", "10.247.0.0/24")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("trellis demo output:\n%s", out.String())
	if err != nil {
		if strings.Contains(out.String(), "HTTP 431") {
			t.Errorf("HTTP 431 means a request loop in a server sidecar: its inbound connection on the app's " +
				"port 80 was handed to the outbound listener 0.0.0.0_80 (canary's port) and re-captured; " +
				"virtualInbound must not hand off (no use_original_dst), see docs/xds-contract.md")
		}
		t.Fatalf("trellis demo: %v", err)
	}
	for _, want := range []string{"[1/6]", "[6/6] summary", "latency p50", "done: nothing left behind", "dashboard (service graph, config, measured split) while the demo runs: http://10.246.0.1:20001/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep demo.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	share := func(step, answer string) float64 {
		s := rep.Step(step)
		if s == nil {
			t.Fatalf("no step %q in the report", step)
		}
		return s.Result.Percent(answer)
	}
	tests := []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"weighted v1", share("weighted", demo.BillV1), 90, 3},
		{"weighted v2", share("weighted", demo.BillV2), 10, 3},
		{"even v1", share("even", demo.BillV1), 50, 8},
		{"jesse to v2", share("canary-jesse", demo.CanaryV2), 100, 0},
		{"others to v1", share("canary-others", demo.CanaryV1), 100, 0},
		{"aborts", share("fault-abort", demo.Abort), 50, 8},
		{"even again v1", share("even-again", demo.BillV1), 50, 8},
	}
	for _, tt := range tests {
		if math.Abs(tt.got-tt.want) > tt.tol {
			t.Errorf("%s: got %.1f%%, want %g%% ±%g", tt.name, tt.got, tt.want, tt.tol)
		}
	}
	if s := rep.Step("weighted"); s != nil && s.Result.Calls != 1000 {
		t.Errorf("weighted step: got %d calls, want 1000", s.Result.Calls)
	}
	if s := rep.Step("fault-delay"); s == nil || s.Result.MinMs < 5000 {
		t.Errorf("delay fault: got %+v, want every call >= 5 s", s)
	}
	if !rep.Intercept {
		t.Errorf("got a run without interception, want namespaces + iptables as root")
	}
	if left := leftovers(t, prefix); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if after := hostNAT(t); after != before {
		t.Errorf("host iptables changed:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestDemoInterruptTearsDown sends SIGINT (Ctrl-C) while the demo runs:
// it must remove everything itself before exiting.
func TestDemoInterruptTearsDown(t *testing.T) {
	requireMesh(t)
	const prefix = "t6q"
	state := t.TempDir()
	cmd, out := startDemoUntilApps(t, prefix, state, "10.250.0.0/24", "10.251.0.0/24")
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the demo did not exit within 30s of SIGINT:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "tearing down") {
		t.Errorf("output lacks the teardown:\n%s", out.String())
	}
	if left := leftovers(t, prefix); len(left) > 0 {
		t.Errorf("left behind after Ctrl-C: %v\n%s", left, out.String())
	}
	if _, err := os.Stat(local.StatePath(state, prefix)); err == nil {
		t.Errorf("state file left after Ctrl-C")
	}
}

// startDemoUntilApps starts `trellis demo` and returns once its state file
// lists the four apps.
func startDemoUntilApps(t *testing.T, prefix, state, subnet, vips string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(meshbin.Dir(), "trellis"), "demo", "--bin-dir", meshbin.Dir(),
		"--calls", "50", "--prefix", prefix, "--state-dir", state, "--subnet", subnet, "--vip-subnet", vips)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statePath := local.StatePath(state, prefix)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _ := local.ReadState(statePath)
		if st != nil && strings.Count(fmtProcs(st), "app") >= 4 {
			return cmd, out
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the demo did not start its apps within 60s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDemoCrashLeftoversRemoved kills `trellis demo` mid-run with SIGKILL
// (no chance to clean up) and checks that `trellis local down` (what a
// re-run does first) removes every namespace, link, file and process.
func TestDemoCrashLeftoversRemoved(t *testing.T) {
	requireMesh(t)
	const prefix = "t6k"
	state := t.TempDir()
	cmd, _ := startDemoUntilApps(t, prefix, state, "10.248.0.0/24", "10.249.0.0/24")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if left := leftovers(t, prefix); len(left) == 0 {
		t.Fatalf("got nothing to clean after a SIGKILL, want the crashed run's namespaces (the test would prove nothing)")
	}
	down := exec.Command(filepath.Join(meshbin.Dir(), "trellis"), "local", "down", "--prefix", prefix, "--state-dir", state)
	if o, err := down.CombinedOutput(); err != nil {
		t.Fatalf("trellis local down: %v: %s", err, o)
	}
	time.Sleep(200 * time.Millisecond) // killed processes are reaped by init
	if left := leftovers(t, prefix); len(left) > 0 {
		t.Errorf("left behind after local down: %v", left)
	}
}

func fmtProcs(st *local.State) string {
	var b strings.Builder
	for _, p := range st.Processes {
		b.WriteString(p.Role + " ")
	}
	return b.String()
}
