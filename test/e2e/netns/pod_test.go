package netns

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// podManifests are what a user would kubectl apply: a backend and a slow
// server with their Services, and a Job whose one step is a call to the
// backend. TRELLIS stands for the trellis binary, which plays the apps.
const podManifests = `apiVersion: v1
kind: Service
metadata: {name: backend, namespace: batch}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: batch}
spec:
  selector: {app: slow}
  ports: [{name: http, port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: batch, labels: {app: backend}}
spec:
  containers:
  - {name: backend, image: example/backend:1, command: [TRELLIS, demoapp, --name, backend, --listen, ":80"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: slow
  namespace: batch
  labels: {app: slow}
  annotations:
    proxy.istio.io/config: "terminationDrainDuration: 2s"
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - {name: slow, image: example/slow:1, command: [TRELLIS, demoapp, --name, slow, --listen, ":80", --delay, 1500ms]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: report, namespace: batch}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: report}
      annotations:
        proxy.istio.io/config: "terminationDrainDuration: 0.1s"
    spec:
      restartPolicy: Never
      containers:
      - name: report
        image: example/report:1
        command: [TRELLIS, demoapp, load, "http://backend.batch.svc.cluster.local:8080/", --calls, "1", --concurrency, "1", --timeout, 5s]
`

// legacyJob is the same Job for a cluster without native sidecars: it is
// injected in the held fallback form (the proxy first among the
// containers, its postStart hook `trellis-proxy wait`).
const legacyJob = `apiVersion: batch/v1
kind: Job
metadata: {name: report-legacy, namespace: batch}
spec:
  template:
    metadata:
      labels: {app: report-legacy}
      annotations:
        proxy.istio.io/config: "terminationDrainDuration: 0.1s"
    spec:
      restartPolicy: Never
      containers:
      - name: report
        image: example/report:1
        command: [TRELLIS, demoapp, load, "http://backend.batch.svc.cluster.local:8080/", --calls, "1", --concurrency, "1", --timeout, 5s]
`

// podMesh injects podManifests with the real `trellis kube-inject`
// (native sidecars), converts the output with `trellis local from-pod`
// and brings the spec up.
func podMesh(t *testing.T) (*local.Mesh, local.Binaries) {
	t.Helper()
	bins, err := local.FindBinaries(meshbin.Dir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(in, []byte(podManifests), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	inj := exec.Command(bins.Trellis, "kube-inject", "-f", in)
	inj.Stderr = &stderr
	injected, err := inj.Output()
	if err != nil {
		t.Fatalf("kube-inject: %v: %s", err, stderr.String())
	}
	if !bytes.Contains(injected, []byte("restartPolicy: Always")) {
		t.Fatalf("kube-inject did not produce native sidecars:\n%s", injected)
	}
	legacyIn := filepath.Join(dir, "legacy.yaml")
	if err := os.WriteFile(legacyIn, []byte(legacyJob), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	inj = exec.Command(bins.Trellis, "kube-inject", "-f", legacyIn, "--kube-version", "1.28")
	inj.Stderr = &stderr
	legacy, err := inj.Output()
	if err != nil {
		t.Fatalf("kube-inject --kube-version 1.28: %v: %s", err, stderr.String())
	}
	if !bytes.Contains(legacy, []byte("postStart")) {
		t.Fatalf("kube-inject --kube-version 1.28 did not produce the fallback form:\n%s", legacy)
	}
	injected = append(append(injected, []byte("\n---\n")...), legacy...)
	specPath := filepath.Join(dir, "workloads.yaml")
	conv := exec.Command(bins.Trellis, "local", "from-pod", "-f", "-", "-o", specPath)
	conv.Stdin = bytes.NewReader(injected)
	if out, err := conv.CombinedOutput(); err != nil {
		t.Fatalf("local from-pod: %v: %s", err, out)
	}
	spec, err := local.LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	spec.ExpandCommand(bins.Trellis)
	plan, err := local.NewPlan(spec, local.Options{Prefix: "t14p",
		Subnet: netip.MustParsePrefix("10.214.0.0/24"), VIPSubnet: netip.MustParsePrefix("10.214.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(state, "config")
	if err := mkdir(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := bins.MeshRunner(plan, cfg, state, nil).Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// What `trellis local up` waits for, a finished Job's pod aside.
		if err := m.WaitReady(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		if err := m.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
		if l := leftovers(t, "t14p"); len(l) > 0 {
			t.Errorf("left behind: %v", l)
		}
	})
	return m, bins
}

// TestInjectedPodsRunAsAKubeletWould drives the sidecar lifecycle of
// injected pods end to end: the Job's app starts only once its proxy is
// ready, so its first (and only) call succeeds on every one of 50 starts
// (native sidecar, startup probe) and 5 more (fallback form, postStart);
// each start ends by itself when the app exits, the proxy stopped then;
// and stopping a server pod (app first, proxy last, the proxy draining)
// lets a request in flight finish.
func TestInjectedPodsRunAsAKubeletWould(t *testing.T) {
	requireMesh(t)
	m, bins := podMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The Job ran once during Up; the backend's app must serve before the
	// counted starts (an app has no readiness gate of its own here).
	if err := m.Pod("report").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := m.Exec(ctx, "slow", bins.Trellis, "demoapp", "load", "--calls", "1", "--timeout", "5s", "http://backend.batch.svc.cluster.local:8080/")
		if err == nil && strings.Contains(string(out), `"this is backend":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend never answered: %s %v", out, err)
		}
	}

	if err := m.Pod("report-legacy").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// 50 starts of the Job's pod. The backend's address is a service VIP
	// that only the sidecar can route, so an answer proves the app's
	// first call went through a ready proxy.
	logPath := filepath.Join(m.LogDir(), "report.app.log")
	const starts = 50
	for i := 0; i < starts; i++ {
		r, err := m.StartPod(ctx, "report")
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		err = r.Wait(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("start %d: the Job's pod did not end after its app exited: %v", i, err)
		}
		if !r.ProxyExited() {
			t.Fatalf("start %d: the pod ended with its proxy running", i)
		}
		out, _ := os.ReadFile(logPath)
		if r.AppExit != 0 || !strings.Contains(string(out), `"this is backend":1`) || !strings.Contains(string(out), `"status":{"200":1}`) {
			t.Fatalf("start %d: the app's first call: exit %d, output %s; want one 200 from backend", i, r.AppExit, out)
		}
	}

	// The fallback form: the app is held by the proxy's postStart hook.
	legacyLog := filepath.Join(m.LogDir(), "report-legacy.app.log")
	for i := 0; i < 5; i++ {
		r, err := m.StartPod(ctx, "report-legacy")
		if err != nil {
			t.Fatalf("fallback start %d: %v", i, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		err = r.Wait(wctx)
		wcancel()
		if err != nil || !r.ProxyExited() {
			t.Fatalf("fallback start %d: the pod did not end with its app: %v", i, err)
		}
		out, _ := os.ReadFile(legacyLog)
		if r.AppExit != 0 || !strings.Contains(string(out), `"status":{"200":1}`) {
			t.Fatalf("fallback start %d: the app's first call: exit %d, output %s; want one 200 from backend", i, r.AppExit, out)
		}
	}

	// SIGTERM to the slow server's pod with a request in flight.
	type result struct {
		out []byte
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		out, err := m.Exec(ctx, "backend", bins.Trellis, "demoapp", "load", "--calls", "1", "--timeout", "20s", "http://slow.batch.svc.cluster.local:8080/")
		inflight <- result{out, err}
	}()
	// Once the slow server's proxy is connected to its app, the app holds
	// the request for its 1.5 s delay; a moment more lets the app's accept
	// loop take the connection before it is told to stop.
	for deadline := time.Now().Add(20 * time.Second); appConnections(m, "slow") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			var got result
			select {
			case got = <-inflight:
			default:
			}
			app, _ := os.ReadFile(filepath.Join(m.LogDir(), "slow.app.log"))
			proxy, _ := os.ReadFile(filepath.Join(m.LogDir(), "slow.proxy.log"))
			t.Fatalf("the request never reached the slow server's app through its proxy (caller: %s %v)\napp log:\n%s\nproxy log:\n%s", got.out, got.err, app, proxy)
		}
	}
	time.Sleep(300 * time.Millisecond)
	slow := m.Pod("slow")
	stopped := make(chan struct{})
	go func() { slow.Stop(); close(stopped) }()
	select {
	case got := <-inflight:
		if got.err != nil || !strings.Contains(string(got.out), `"this is slow":1`) {
			t.Errorf("request in flight when the pod was stopped: %s %v; want one answer from slow", got.out, got.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight request never ended")
	}
	select {
	case <-stopped:
	case <-time.After(40 * time.Second):
		t.Fatal("the slow pod did not stop")
	}
	if !slow.ProxyExited() {
		t.Error("the slow pod's proxy still runs after Stop")
	}
}

// appConnections counts the established TCP connections to port 80 (the
// app) inside a workload's namespace, from its /proc/net/tcp.
func appConnections(m *local.Mesh, workload string) int {
	w, _ := m.Workload(workload)
	n := 0
	netns.Do(w.Netns, func() error {
		// A dual-stack listener's connections are in tcp6.
		for _, file := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(file)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				f := strings.Fields(line)
				// sl local_address rem_address st; st 01 is ESTABLISHED.
				if len(f) > 3 && f[3] == "01" && strings.HasSuffix(f[1], ":0050") {
					n++
				}
			}
		}
		return nil
	})
	return n
}
