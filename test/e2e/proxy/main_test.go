package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

var proxyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-proxy-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "trellis-proxy")
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", proxyBin, "github.com/trellis-mesh/trellis/cmd/trellis-proxy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build trellis-proxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startTrellisd runs the control plane in-process over configDir.
func startTrellisd(t *testing.T, configDir, accessLog string) *trellisd.Server {
	t.Helper()
	ready := make(chan *trellisd.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := trellisd.Options{
		ConfigDir:     configDir,
		XDSAddress:    "127.0.0.1:0",
		Debounce:      10 * time.Millisecond,
		AccessLogFile: accessLog,
		Logf:          func(string, ...any) {},
		Ready:         func(s *trellisd.Server) { ready <- s },
	}
	go func() { done <- trellisd.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case s := <-ready:
		return s
	case err := <-done:
		t.Fatalf("trellisd: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("trellisd not ready")
	}
	return nil
}

// proc is a running trellis-proxy process.
type proc struct {
	cmd *exec.Cmd
	out *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProxy runs trellis-proxy with args until the test ends; it stops it
// with SIGTERM (the drain path) and fails the test if it does not exit.
func startProxy(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProxyCmd(t, exec.Command(proxyBin, args...))
}

// startProxyCmd is startProxy for a prepared command (environment,
// inherited descriptors).
func startProxyCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("trellis-proxy did not exit on SIGTERM")
		}
		if t.Failed() {
			t.Logf("trellis-proxy output:\n%s", out.String())
		}
	})
	return p
}

// waitHTTP polls until a request through addr with host answers 200.
func waitHTTP(t *testing.T, addr, host string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no 200 through %s for host %s", addr, host)
}

// versionServer answers every request with its name.
func versionServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// writeConfig writes name into dir atomically, replacing {{KEY}}s.
func writeConfig(t *testing.T, dir, name, content string, vars map[string]string) {
	t.Helper()
	for k, v := range vars {
		content = strings.ReplaceAll(content, "{{"+k+"}}", v)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// scenario copies a scenario file from /work/shared/scenarios verbatim
// (optionally with replacements for test speed).
func scenario(t *testing.T, rel string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(scenarioDir(), rel))
	if err != nil {
		t.Skipf("scenario %s not available: %v", rel, err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	return s
}

func scenarioDir() string {
	if d := os.Getenv("TRELLIS_SCENARIOS"); d != "" {
		return d
	}
	return "/work/shared/scenarios"
}

// count sends n requests with host through addr and counts the bodies.
func count(t *testing.T, addr, host string, n int, hdr map[string]string) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	got := map[string]int{}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/env/version", nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			got["error"]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			got[fmt.Sprintf("%d %s", resp.StatusCode, b)]++
			continue
		}
		got[string(b)]++
	}
	return got
}

// eventually retries check until it passes or 15 s pass.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out
}

// startProxyWithCredential starts trellis-proxy with args as a workload of
// trellisd's CA at caAddr: its local credential handed over on descriptor 3
// (TRELLIS_CA_TOKEN_FD), the CA's root at root, and env added.
func startProxyWithCredential(t *testing.T, token, caAddr, root string, env []string, args ...string) *proc {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(wr, token)
	wr.Close()
	cmd := exec.Command(proxyBin, args...)
	cmd.Env = append(append(os.Environ(), "CA_ADDR="+caAddr, "TRELLIS_CA_TOKEN_FD=3", "TRELLIS_CA_ROOT_CERT="+root), env...)
	cmd.ExtraFiles = []*os.File{rd}
	p := startProxyCmd(t, cmd)
	rd.Close()
	return p
}
