package netns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// syncBuf is a buffer a child process writes while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const upgradeSpec = `namespace: istio-demo
services:
- name: bill-service
  ports: [{name: http, port: 9999, targetPort: 80}]
  selector: {service: bill-service}
workloads:
- name: front
  labels: {app: front, version: v1}
- name: bill-v1
  labels: {service: bill-service, version: v1}
  command: [TRELLIS, demoapp, --name, bill-service-v1, --listen, ":80"]
- name: bill-v2
  labels: {service: bill-service, version: v2}
  command: [TRELLIS, demoapp, --name, bill-service-v2, --listen, ":80"]
`

// TestLocalUpUpgradesSidecarsOnSIGUSR2: `trellis local up` (the real
// binary) hot-restarts every sidecar from the trellis-proxy in --bin-dir
// when it gets SIGUSR2, here after a new build was copied there, while
// requests flow from the client's namespace through both sidecars: none
// fails, every sidecar runs a new process, the old ones have exited.
func TestLocalUpUpgradesSidecarsOnSIGUSR2(t *testing.T) {
	requireMesh(t)
	const prefix = "t84u"
	subnet, vips := "10.184.2.0/24", "10.184.3.0/24"
	state := t.TempDir()
	// The sidecars (uid 1337) read the published trust bundle under it.
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The binaries must be runnable by uid 1337: a world-searchable path.
	work, err := os.MkdirTemp("", "trellis-upgrade-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755)
	binDir := filepath.Join(work, "bin")
	os.MkdirAll(binDir, 0o755)
	for _, b := range []string{"trellis", "trellisd", "trellis-proxy"} {
		copyFile(t, filepath.Join(meshbin.Dir(), b), filepath.Join(binDir, b))
	}
	specFile := filepath.Join(work, "spec.yaml")
	if err := os.WriteFile(specFile, []byte(upgradeSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := local.LoadSpec(specFile)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := local.NewPlan(spec, local.Options{Prefix: prefix, Subnet: netip.MustParsePrefix(subnet), VIPSubnet: netip.MustParsePrefix(vips)})
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(binDir, "trellis"), "local", "up", "-f", specFile, "--bin-dir", binDir,
		"--prefix", prefix, "--state-dir", state, "--subnet", subnet, "--vip-subnet", vips)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("trellis local up did not exit within 30 s of SIGINT")
		}
		if left := leftovers(t, prefix); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
		if t.Failed() {
			t.Logf("trellis local up output:\n%s", out.String())
		}
	}()
	waitOutput := func(what string, d time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(d); !strings.Contains(out.String(), what); time.Sleep(100 * time.Millisecond) {
			select {
			case <-exited:
				t.Fatalf("trellis local up exited while waiting for %q", what)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the output within %s", what, d)
			}
		}
	}
	waitOutput("ready; Ctrl-C to stop", 120*time.Second)

	var front local.PlacedWorkload
	for _, w := range plan.Workloads {
		if w.Name == "front" {
			front = w
		}
	}
	url := "http://" + plan.Services[0].VIP.String() + ":9999/"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, front.Netns, network, addr)
		}}}
	call := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	}
	for deadline := time.Now().Add(60 * time.Second); call() != nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering from %s within 60 s", url, front.Netns)
		}
	}

	before := proxyPIDs(t, state, prefix)
	var ok atomic.Int64
	var mu sync.Mutex
	failed := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := call(); err != nil {
					mu.Lock()
					failed[err.Error()]++
					mu.Unlock()
					continue
				}
				ok.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	// The upgrade: a new build in --bin-dir (a copy here), then SIGUSR2.
	os.Remove(filepath.Join(binDir, "trellis-proxy"))
	copyFile(t, filepath.Join(meshbin.Dir(), "trellis-proxy"), filepath.Join(binDir, "trellis-proxy"))
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitOutput("upgraded 3 sidecars", 90*time.Second)
	took := time.Since(t0)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("SIGUSR2 upgraded the 3 sidecars in %s; %d requests answered, failed: %v", took.Round(time.Millisecond), ok.Load(), failed)
	if len(failed) > 0 {
		t.Errorf("requests failed during the upgrade: %v; want none", failed)
	}
	after := proxyPIDs(t, state, prefix)
	for name, pid := range before {
		if after[name] == pid {
			t.Errorf("%s's sidecar is still pid %d after the upgrade", name, pid)
		}
		if syscall.Kill(pid, 0) == nil {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
				t.Errorf("%s's old sidecar (pid %d) still runs", name, pid)
			}
		}
	}
}

// proxyPIDs are the last proxy process the state file lists per workload.
func proxyPIDs(t *testing.T, state, prefix string) map[string]int {
	t.Helper()
	st, err := local.ReadState(local.StatePath(state, prefix))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range st.Processes {
		if p.Role == "proxy" {
			out[p.Name] = p.PID
		}
	}
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
