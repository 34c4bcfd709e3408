package local

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces, a bridge and iptables rules")
	}
	for _, bin := range []string{"ip", "iptables", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs it)", bin)
		}
	}
}

// worldExecutable copies the test binary where uid 65534 and 1337 can run it.
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, "helper")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(out, in)
	out.Close()
	return bin
}

func testRunner(t *testing.T, bin string) *Runner {
	t.Helper()
	spec, err := LoadSpec("testdata/billing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec.ExpandCommand(bin)
	var b [1]byte
	rand.Read(b[:])
	x := int(b[0])%200 + 20
	plan, err := NewPlan(spec, Options{
		Prefix:    "t6l",
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", x)),
		VIPSubnet: netip.MustParsePrefix(fmt.Sprintf("10.245.%d.0/24", x)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, s := range plan.Services {
		for _, port := range s.Ports {
			var eps []string
			for _, w := range plan.Workloads {
				if selects(s.Selector, w.Labels) {
					eps = append(eps, fmt.Sprintf("%s:%d", w.IP, port.TargetPort))
				}
			}
			routes = append(routes, fmt.Sprintf("%s:%d=%s", s.VIP, port.Port, strings.Join(eps, ",")))
		}
	}
	return &Runner{
		Plan:      plan,
		ConfigDir: t.TempDir(),
		StateDir:  t.TempDir(),
		Intercept: true,
		ProxyCommand: func(*Plan, PlacedWorkload) []string {
			return []string{bin, "fakeproxy", strings.Join(routes, ";")}
		},
		ProxyReady: "http://127.0.0.1:15021/healthz/ready",
		Log:        testLog{t},
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestLocalMeshByName: the front end calls bill-service:9999 by name from
// inside its namespace as an ordinary user; the call passes its own
// sidecar and the server's (both count it), reaches v1 and v2, and Down
// leaves nothing behind. A crashed run's leftovers are removed by the next.
func TestLocalMeshByName(t *testing.T) {
	requireRoot(t)
	bin := worldExecutable(t)
	r := testRunner(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	crashed, err := r.Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var oldPIDs []int
	for _, p := range crashed.state.snapshot().Processes {
		oldPIDs = append(oldPIDs, p.PID)
	}
	// A second Up without Down: as after a crash, it must clean up first.
	m, err := r.Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Down(context.Background()) })
	for _, pid := range oldPIDs {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("process %d of the crashed run is still running", pid)
			}
		}
	}
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(r.ConfigDir, "t6l-workloads.yaml"))
	if err != nil || !strings.Contains(string(cfg), "kind: WorkloadEntry") {
		t.Errorf("mesh config: got %q, %v; want the WorkloadEntries", cfg, err)
	}

	out, err := m.Exec(ctx, "front-tomcat-v1", bin, "load", "http://bill-service:9999/", "10")
	if err != nil {
		t.Fatal(err)
	}
	var res demoapp.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("load output %q: %v", out, err)
	}
	if got1, got2 := res.Answers["this is bill-service-v1"], res.Answers["this is bill-service-v2"]; got1 != 5 || got2 != 5 {
		t.Errorf("got answers %v, want 5 from each of v1 and v2", res.Answers)
	}
	stats := func(w string) string {
		resp, err := m.HTTPClient(w).Get("http://127.0.0.1:15021/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := stats("front-tomcat-v1"); !strings.Contains(got, "outbound 10\n") {
		t.Errorf("client sidecar stats: got %q, want 10 outbound connections", got)
	}
	for _, w := range []string{"bill-service-v1", "bill-service-v2"} {
		if got := stats(w); !strings.Contains(got, "inbound 5\n") {
			t.Errorf("%s sidecar stats: got %q, want 5 inbound connections", w, got)
		}
	}

	st := m.state.snapshot()
	if err := m.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, r, st)
}

func assertNothingLeft(t *testing.T, r *Runner, st State) {
	t.Helper()
	if ns, _ := netns.List(r.Plan.Options.Prefix + "-"); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, r.Plan.Options.Prefix) {
			t.Errorf("link left: %s", i.Name)
		}
	}
	for _, d := range st.HostsDirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("hosts dir left: %s", d)
		}
	}
	for _, f := range append(st.Files, StatePath(r.StateDir, r.Plan.Options.Prefix)) {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("file left: %s", f)
		}
	}
	for _, p := range st.Processes {
		if sameProcess(p) {
			t.Errorf("process left: %d %v", p.PID, p.Argv)
		}
	}
}
