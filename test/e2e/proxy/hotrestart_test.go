package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// hotProc is a trellis-proxy generation whose exit the test watches.
type hotProc struct {
	epoch int
	cmd   *exec.Cmd
	out   *lockedBuf
	done  chan struct{}
	err   error
}

func startHot(t *testing.T, bin string, epoch int, args []string) *hotProc {
	t.Helper()
	argv := append(append([]string{}, args...), "--restart-epoch", strconv.Itoa(epoch))
	cmd := exec.Command(bin, argv...)
	hp := &hotProc{epoch: epoch, cmd: cmd, out: &lockedBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = hp.out, hp.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { hp.err = cmd.Wait(); close(hp.done) }()
	t.Cleanup(func() {
		select {
		case <-hp.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-hp.done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-hp.done
			}
		}
		if t.Failed() {
			t.Logf("epoch %d (%s) output:\n%s", epoch, bin, hp.out.String())
		}
	})
	return hp
}

// hotLoad is one kind of client sending requests in a closed loop until
// stopped, counting every outcome.
type hotLoad struct {
	name    string
	workers int
	do      func(ctx context.Context) (int, error)
	ok      atomic.Int64
	mu      sync.Mutex
	failed  map[string]int
	perProc map[string]int
}

func (l *hotLoad) run(ctx context.Context, wg *sync.WaitGroup) {
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, err := l.do(ctx)
				if ctx.Err() != nil && err != nil {
					return // stopped mid-request: not a proxy failure
				}
				if err == nil && code == http.StatusOK {
					l.ok.Add(1)
					continue
				}
				l.mu.Lock()
				l.failed[fmt.Sprintf("%d %v (at %s)", code, err, time.Now().Format("15:04:05.000000"))]++
				l.mu.Unlock()
			}
		}()
	}
}

func (l *hotLoad) failures() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	var parts []string
	for k, v := range l.failed {
		n += v
		parts = append(parts, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(parts)
	return n, strings.Join(parts, ", ")
}

func hotGet(c *http.Client, url, host string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resp.StatusCode, err
		}
		if resp.StatusCode == http.StatusOK && string(b) != "nginx" {
			return resp.StatusCode, fmt.Errorf("body %q, want nginx", b)
		}
		return resp.StatusCode, nil
	}
}

// TestHotRestartUnderLoad: a sidecar (xDS from trellisd) hot-restarted
// four times through the real binary — twice from a copy of the binary at
// another path, as an upgrade installs one — while HTTP/1.1 keep-alive
// clients, HTTP/1.1 clients opening a connection per request, HTTP/2
// (h2c) clients and a readiness prober that connects each time keep
// calling it. Every request is counted; none may fail. Each old process
// must hand its listener and admin sockets (outbound 80, 15001, 15006,
// admin, 15021, 15090) to the new one, drain and exit 0, and the new one
// serves alone afterwards.
func TestHotRestartUnderLoad(t *testing.T) {
	dir := t.TempDir()
	nginx := versionServer(t, "nginx")
	writeConfig(t, dir, "workloads.yaml", service("sidecar", "nginx", nginx, 80), nil)
	td := startTrellisd(t, dir, "")

	upgraded := filepath.Join(t.TempDir(), "v2", "trellis-proxy")
	os.MkdirAll(filepath.Dir(upgraded), 0o755)
	b, err := os.ReadFile(proxyBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upgraded, b, 0o755); err != nil {
		t.Fatal(err)
	}

	local, admin, ready, prom := freePort(t), freePort(t), freePort(t), freePort(t)
	base := strconv.Itoa(int(time.Now().UnixNano()%100000) + 100)
	args := []string{"--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "toolbox", "--namespace", "sidecar",
		"--labels", "app=toolbox", "--admin-address", admin,
		"--ready-address", ready, "--prometheus-address", prom, "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", local, freePort(t), freePort(t)),
		"--drain-duration", "1s", "--base-id", base, "--drain-time-s", "2", "--parent-shutdown-time-s", "5"}
	cur := startHot(t, proxyBin, 0, args)
	waitHTTP(t, local, "nginx.sidecar.svc.cluster.local")

	url := "http://" + local + "/"
	const host = "nginx.sidecar.svc.cluster.local"
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	h1new := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	loads := []*hotLoad{
		{name: "HTTP/1.1 keep-alive", workers: 6, do: hotGet(h1, url, host)},
		{name: "HTTP/1.1 new connection each", workers: 2, do: hotGet(h1new, url, host)},
		{name: "HTTP/2 (h2c)", workers: 4, do: hotGet(h2c, url, host)},
		{name: "readiness probe 15021", workers: 1, do: func(ctx context.Context) (int, error) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ready+"/healthz/ready", nil)
			resp, err := probe.Do(req)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			time.Sleep(10 * time.Millisecond)
			return resp.StatusCode, nil
		}},
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range loads {
		l.failed = map[string]int{}
		l.run(ctx, &wg)
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			stop()
			wg.Wait()
		}
	}
	defer stopLoad()
	total := func() int64 {
		var n int64
		for _, l := range loads {
			n += l.ok.Load()
		}
		return n
	}
	time.Sleep(500 * time.Millisecond)

	// A successor that cannot warm (nothing at its xDS address) takes the
	// sockets but never accepts nor drains the running process; stopping
	// it leaves epoch 0 serving.
	stuckArgs := append([]string{}, args...)
	stuckArgs[1] = freePort(t)
	stuck := startHot(t, proxyBin, 1, stuckArgs)
	eventually(t, "the stuck successor holds the sockets and warms", func() error {
		if log := stuck.out.String(); !strings.Contains(log, "took 3 listener and 3 admin sockets") || !strings.Contains(log, "warming the configuration") {
			return fmt.Errorf("log so far:\n%s", log)
		}
		return nil
	})
	n0 := total()
	time.Sleep(500 * time.Millisecond)
	select {
	case <-cur.done:
		t.Fatalf("epoch 0 exited while its successor could not warm: %v", cur.err)
	default:
	}
	if total() == n0 {
		t.Fatal("nothing answered while a successor was warming")
	}
	stuck.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-stuck.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck successor did not exit on SIGTERM")
	}
	n1 := total()
	time.Sleep(300 * time.Millisecond)
	if total() == n1 || strings.Contains(cur.out.String(), "took over") {
		t.Fatal("epoch 0 stopped serving after its stuck successor was stopped")
	}
	t.Logf("a successor that could not warm held the sockets for 500 ms: epoch 0 answered %d requests meanwhile and serves on after it stopped", n1-n0)

	for epoch, bin := range []string{proxyBin, upgraded, upgraded, proxyBin} {
		epoch++
		before := total()
		next := startHot(t, bin, epoch, args)
		select {
		case <-cur.done:
		case <-next.done:
			t.Fatalf("epoch %d exited: %v", epoch, next.err)
		case <-time.After(30 * time.Second):
			t.Fatalf("epoch %d did not exit within 30 s of epoch %d starting", cur.epoch, epoch)
		}
		if cur.err != nil {
			t.Errorf("epoch %d exited with %v; want 0", cur.epoch, cur.err)
		}
		for _, want := range []string{"took over; stopped accepting", "drained in"} {
			if !strings.Contains(cur.out.String(), want) {
				t.Errorf("epoch %d's log has no %q", cur.epoch, want)
			}
		}
		if log := next.out.String(); !strings.Contains(log, "took 3 listener and 3 admin sockets") || !strings.Contains(log, "accepting; epoch") {
			t.Errorf("epoch %d did not take the 3 listener and 3 admin sockets and accept; log:\n%s", epoch, log)
		}
		// The new generation alone serves now.
		after := total()
		time.Sleep(300 * time.Millisecond)
		t.Logf("epoch %d (%s) took over: %d requests answered during the handover, %d in the next 300 ms by epoch %d alone",
			epoch, bin, after-before, total()-after, epoch)
		if total() == after {
			t.Errorf("epoch %d answered nothing after epoch %d exited", epoch, cur.epoch)
		}
		cur = next
	}
	stopLoad()
	for _, l := range loads {
		n, why := l.failures()
		t.Logf("%s: %d answered 200, %d failed %s", l.name, l.ok.Load(), n, why)
		if n > 0 {
			t.Errorf("%s: %d requests failed across the hot restarts (%s); want 0", l.name, n, why)
		}
		if l.ok.Load() == 0 {
			t.Errorf("%s: no request answered", l.name)
		}
	}
	// The last generation still serves its admin API on the inherited socket.
	resp, err := http.Get("http://" + admin + "/stats?filter=server.hot_restart_epoch")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "server.hot_restart_epoch: 4") {
		t.Errorf("admin /stats: got %q, want server.hot_restart_epoch: 4", body)
	}
}
