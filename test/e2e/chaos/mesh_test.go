package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

const (
	prefix    = "t13c"
	subnetX   = 213
	namespace = "istio-demo"
	host      = "bill-service.istio-demo.svc.cluster.local"
)

// spec is a client with a sidecar and no app, and four bill-service
// instances: two of version v1 and one of v2 serve throughout, bill-v1b is
// drained and bill-v1c killed by the endpoint case.
func spec() *local.Spec {
	bill := func(name, version string) local.Workload {
		return local.Workload{Name: name, Labels: map[string]string{"service": "bill-service", "version": version},
			Command: []string{"TRELLIS", "demoapp", "--name", "bill-service-" + version, "--listen", ":80"}}
	}
	return &local.Spec{
		Namespace: namespace,
		Services: []local.Service{{
			Name: "bill-service", Ports: []local.ServicePort{{Name: "http", Port: 9999, TargetPort: 80}, {Name: "grpc", Port: grpcPort, TargetPort: grpcTarget, Protocol: "GRPC"}},
			Selector: map[string]string{"service": "bill-service"},
		}},
		Workloads: []local.Workload{
			{Name: "front", Labels: map[string]string{"app": "front", "version": "v1"}},
			bill("bill-v1", "v1"), bill("bill-v2", "v2"), bill("bill-v1b", "v1"), bill("bill-v1c", "v1"),
		},
	}
}

// mesh is the running local mesh and what the cases need to disturb it.
type mesh struct {
	t *testing.T
	// prefix names the mesh's namespaces, links and state (net: its
	// 10.X.0.0/24 and VIPs 10.X.1.0/24).
	prefix   string
	m        *local.Mesh
	bins     local.Binaries
	stateDir string
	cfgDir   string
	// trellisd is the running control plane's process group.
	trellisd int
	argv     []string // trellisd's command line, to restart it
	// grpcApps are the gRPC echo servers by server workload.
	grpcApps map[string]*grpcApp
}

func startMesh(t *testing.T) *mesh { return startMeshOn(t, prefix, subnetX) }

// startMeshOn starts the mesh with its own name prefix and subnet
// 10.x.0.0/24 (VIPs 10.x.1.0/24), so that tests of other subnets can run
// the same spec.
func startMeshOn(t *testing.T, prefix string, subnetX int) *mesh {
	t.Helper()
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		t.Fatal(err)
	}
	s := spec()
	s.ExpandCommand(bins.Trellis)
	plan, err := local.NewPlan(s, local.Options{
		Prefix:    prefix,
		Subnet:    netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", subnetX)),
		VIPSubnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.1.0/24", subnetX)),
	})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// The sidecars (uid 1337) read the published trust bundle under it:
	// without this they have no certificate and call each other in
	// plaintext.
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(state, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
	ms := &mesh{t: t, prefix: prefix, m: m, bins: bins, stateDir: state, cfgDir: cfg}
	// The gRPC apps are up before the mesh is waited on: readiness probes
	// every target port.
	ms.grpcApps = ms.startGRPCApps()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	p := ms.process("trellisd", "trellisd")
	ms.trellisd, ms.argv = p.PID, p.Argv
	return ms
}

// process is the one the mesh started last with this role for this
// workload (after a hot restart, the new generation).
func (ms *mesh) process(role, name string) local.Process {
	ms.t.Helper()
	st, err := local.ReadState(local.StatePath(ms.stateDir, ms.prefix))
	if err != nil {
		ms.t.Fatal(err)
	}
	for i := len(st.Processes) - 1; i >= 0; i-- {
		if p := st.Processes[i]; p.Role == role && p.Name == name {
			return p
		}
	}
	ms.t.Fatalf("no %s process for %s in the state file", role, name)
	return local.Process{}
}

// apply writes a config file for trellisd atomically (it watches the
// directory for *.yaml).
func (ms *mesh) apply(name, yaml string) {
	ms.t.Helper()
	tmp := filepath.Join(ms.cfgDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		ms.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(ms.cfgDir, name+".yaml")); err != nil {
		ms.t.Fatal(err)
	}
}

// deregister rewrites the mesh's registration without a workload's
// WorkloadEntry, as a scale-down removes a pod from the endpoints.
func (ms *mesh) deregister(workload string) {
	ms.t.Helper()
	p := *ms.m.Plan
	p.Workloads = nil
	for _, w := range ms.m.Plan.Workloads {
		if w.Name != workload {
			p.Workloads = append(p.Workloads, w)
		}
	}
	cfg, err := p.MeshConfig()
	if err != nil {
		ms.t.Fatal(err)
	}
	ms.apply(ms.prefix+"-workloads", string(cfg))
}

// signal sends sig to a process group the mesh started and, for a signal
// that ends it, waits (generously) until it is gone.
func (ms *mesh) signal(pid int, sig syscall.Signal) {
	ms.t.Helper()
	if err := syscall.Kill(-pid, sig); err != nil {
		ms.t.Fatalf("signal %d: %v", pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if alive := syscall.Kill(pid, 0) == nil && !zombie(pid); !alive {
			return
		}
		if time.Now().After(deadline) {
			ms.t.Fatalf("process %d still running 30s after %v", pid, sig)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z'
}

// restartTrellisd starts trellisd again with its first command line (same
// config dir, CA root and addresses), tracked so Down stops it.
func (ms *mesh) restartTrellisd() {
	ms.t.Helper()
	lf, err := os.OpenFile(filepath.Join(ms.m.LogDir(), "trellisd.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		ms.t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "--- restarted by the chaos harness ---\n")
	cmd := exec.Command(ms.argv[0], ms.argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ms.t.Fatal(err)
	}
	if err := ms.m.Track("trellisd", "trellisd", cmd); err != nil {
		ms.t.Fatal(err)
	}
	ms.trellisd = cmd.Process.Pid
}

// rss is a process's resident set in KiB.
func rss(pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// rssReport is the client's and a server's sidecar and trellisd, in MiB.
func (ms *mesh) rssReport() string {
	mib := func(pid int) string { return fmt.Sprintf("%.1fMiB", float64(rss(pid))/1024) }
	return fmt.Sprintf("proxy front %s, proxy bill-v1 %s, trellisd %s",
		mib(ms.process("proxy", "front").PID), mib(ms.process("proxy", "bill-v1").PID), mib(ms.trellisd))
}

// flags are the client sidecar's istio_requests_total (reporter=source)
// of one request_protocol ("http" or "grpc") by "code flags", e.g. "200 -"
// or "503 UF".
func (ms *mesh) flags(proto string) map[string]float64 {
	return ms.requests("front", "source", proto)
}

// requests are a workload's sidecar's istio_requests_total as reporter
// ("source" or "destination") of a request_protocol ("" for all) by "code
// flags".
func (ms *mesh) requests(workload, reporter, proto string) map[string]float64 {
	ms.t.Helper()
	out := map[string]float64{}
	resp, err := ms.m.HTTPClient(workload).Get("http://127.0.0.1:15000/stats/prometheus")
	if err != nil {
		ms.t.Errorf("%s admin: %v", workload, err)
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "istio_requests_total{") || !strings.Contains(l, `reporter="`+reporter+`"`) {
			continue
		}
		if proto != "" && label(l, "request_protocol") != proto {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		k := label(l, "response_code") + " " + label(l, "response_flags")
		if g := label(l, "grpc_response_status"); g != "?" && g != "" {
			k += " grpc-status=" + g
		}
		out[k] += v
	}
	return out
}

func label(line, name string) string {
	_, rest, ok := strings.Cut(line, name+`="`)
	if !ok {
		return "?"
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// flagDelta renders what the client sidecar counted between two readings,
// and how many of those were not 200.
func flagDelta(a, b map[string]float64) (string, int) {
	var parts []string
	bad := 0
	for _, k := range sortedKeys(b) {
		if d := b[k] - a[k]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s: %.0f", k, d))
			if !strings.HasPrefix(k, "200 ") || (strings.Contains(k, "grpc-status=") && !strings.HasSuffix(k, "grpc-status=0")) {
				bad += int(d)
			}
		}
	}
	return strings.Join(parts, ", "), bad
}

// serverRequests adds up what the servers' sidecars answered (reporter
// destination) by "code flags".
func (ms *mesh) serverRequests(servers []string) map[string]float64 {
	out := map[string]float64{}
	for _, w := range servers {
		for k, v := range ms.requests(w, "destination", "") {
			out[k] += v
		}
	}
	return out
}

// tcpRetransmits is a namespace's count of retransmitted TCP segments
// (/proc/net/snmp, which shows the reading thread's namespace).
func tcpRetransmits(ns string) (int, error) {
	var n int
	err := netns.Do(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i := range f {
				if i < len(names) && names[i] == "RetransSegs" {
					n, err = strconv.Atoi(f[i])
					return err
				}
			}
		}
		return fmt.Errorf("no Tcp RetransSegs in /proc/net/snmp")
	})
	return n, err
}
