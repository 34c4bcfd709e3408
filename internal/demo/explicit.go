package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local"
)

// upExplicit runs the scenarios without namespaces or iptables (no root):
// trellisd, the apps and the front end's trellis-proxy all on 127.0.0.1.
// The proxy binds its outbound listeners on free ports (--rebind) and the
// load client calls them explicitly with the service's Host header; the
// routing, subsets and faults are the front end's sidecar's, so every
// scenario shows the same behaviour. There is no server-side sidecar.
func (d *demo) upExplicit(ctx context.Context) (func() bool, error) {
	spec, err := Spec(d.bins.Trellis)
	if err != nil {
		return nil, err
	}
	plan, err := local.NewPlan(spec, local.Options{Prefix: d.opts.Prefix, Subnet: d.opts.Subnet, VIPSubnet: d.opts.VIPSubnet})
	if err != nil {
		return nil, err
	}
	statePath := local.StatePath(d.opts.StateDir, d.opts.Prefix)
	if err := local.Cleanup(ctx, statePath, d.opts.Prefix, d.out); err != nil {
		return nil, fmt.Errorf("remove leftovers of an earlier run: %w", err)
	}
	d.cfgDir = filepath.Join(local.StateDir(d.opts.StateDir), "config-"+d.opts.Prefix)
	os.RemoveAll(d.cfgDir)
	if err := os.MkdirAll(d.cfgDir, 0o755); err != nil {
		return nil, err
	}
	d.printf("== trellis demo: bill-service (seed 000) and canary (seed 002), explicit proxy ports on 127.0.0.1")
	e := &explicit{d: d, statePath: statePath}
	teardown := e.teardown
	if err := local.RecordState(statePath, func(s *local.State) {
		s.Prefix = d.opts.Prefix
		s.Files = append(s.Files, d.cfgDir)
	}); err != nil {
		return nil, err
	}

	// Every workload at 127.0.0.1 on its own port.
	loopback := netip.MustParseAddr("127.0.0.1")
	front := -1
	for i := range plan.Workloads {
		w := &plan.Workloads[i]
		w.IP = loopback
		if len(w.Command) == 0 {
			front = i
			continue
		}
		port, err := freePort()
		if err != nil {
			return teardown, err
		}
		w.EntryPorts = map[string]uint32{"http": uint32(port)}
		w.Command = setListen(w.Command, "127.0.0.1:"+strconv.Itoa(port))
	}
	if front < 0 {
		return teardown, fmt.Errorf("the demo spec has no front end (a workload without a command)")
	}
	cfg, err := plan.MeshConfig()
	if err != nil {
		return teardown, err
	}
	cfgFile := filepath.Join(d.cfgDir, d.opts.Prefix+"-workloads.yaml")
	if err := e.file(cfgFile); err != nil {
		return teardown, err
	}
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		return teardown, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return teardown, err
	}
	xds := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if err := e.start(ctx, "trellisd", "trellisd", []string{d.bins.Trellisd, "--config-dir", d.cfgDir, "--xds-address", xds,
		"--debug-address", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		// Without namespaces there are no per-workload credentials: no CA.
		"--ca-address", ""}); err != nil {
		return teardown, err
	}
	if err := waitDial(ctx, xds, e); err != nil {
		return teardown, err
	}
	for _, w := range plan.Workloads {
		if len(w.Command) > 0 {
			if err := e.start(ctx, "app", w.Name, w.Command); err != nil {
				return teardown, err
			}
		}
	}

	// The front end's sidecar: each outbound listener (0.0.0.0:PORT) and
	// the capture ports bound on free loopback ports instead.
	fw := plan.Workloads[front]
	e.listeners = map[uint32]string{}
	var rebinds []string
	svcPorts := []uint32{15001, 15006}
	for _, s := range plan.Services {
		for _, p := range s.Ports {
			svcPorts = append(svcPorts, p.Port)
		}
	}
	for _, p := range svcPorts {
		if _, dup := e.listeners[p]; dup {
			continue
		}
		fp, err := freePort()
		if err != nil {
			return teardown, err
		}
		e.listeners[p] = fmt.Sprintf("127.0.0.1:%d", fp)
		rebinds = append(rebinds, "--rebind", fmt.Sprintf("0.0.0.0:%d=127.0.0.1:%d", p, fp))
	}
	// Admin, readiness and metrics on free loopback ports too: on the host
	// network the defaults (0.0.0.0:15021, 15090, 15020) may be taken.
	own, err := freePorts(4)
	if err != nil {
		return teardown, err
	}
	argv := append(local.ProxyArgs(d.bins.Proxy, xds, plan, fw),
		"--admin-address", fmt.Sprintf("127.0.0.1:%d", own[0]),
		"--ready-address", fmt.Sprintf("127.0.0.1:%d", own[1]),
		"--prometheus-address", fmt.Sprintf("127.0.0.1:%d", own[2]),
		"--merged-address", fmt.Sprintf("127.0.0.1:%d", own[3]))
	if err := e.start(ctx, "proxy", fw.Name, append(argv, rebinds...)); err != nil {
		return teardown, err
	}
	d.printf("waiting for the apps and the front end's sidecar to be ready")
	for _, w := range plan.Workloads {
		for _, p := range w.EntryPorts {
			if err := waitDial(ctx, fmt.Sprintf("127.0.0.1:%d", p), e); err != nil {
				return teardown, err
			}
		}
	}
	for _, s := range plan.Services {
		for _, p := range s.Ports {
			if err := waitDial(ctx, e.listeners[p.Port], e); err != nil {
				return teardown, fmt.Errorf("the front end's sidecar has no listener for port %d: %w", p.Port, err)
			}
		}
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
	d.load = func(ctx context.Context, calls, conc int, header, target string) (demoapp.Result, error) {
		u, err := url.Parse(target)
		if err != nil {
			return demoapp.Result{}, err
		}
		port := uint32(80)
		if p := u.Port(); p != "" {
			n, _ := strconv.Atoi(p)
			port = uint32(n)
		}
		addr, ok := e.listeners[port]
		if !ok {
			return demoapp.Result{}, fmt.Errorf("no proxy port for %s", target)
		}
		l := demoapp.Load{URL: "http://" + addr + u.RequestURI(), Host: u.Host, Calls: calls, Concurrency: conc, Client: client}
		if k, v, ok := strings.Cut(header, ":"); ok {
			l.Header = http.Header{}
			l.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		return l.Run(ctx)
	}
	d.apply = func(file string) error {
		objs, err := manifest(file)
		if err != nil {
			return err
		}
		for _, o := range objs {
			dst := filepath.Join(d.cfgDir, o.File())
			if err := e.file(dst); err != nil {
				return err
			}
			if err := os.WriteFile(dst+".tmp", []byte(o.Text), 0o644); err != nil {
				return err
			}
			if err := os.Rename(dst+".tmp", dst); err != nil {
				return err
			}
		}
		return nil
	}
	d.remove = func(file string) error {
		objs, err := manifest(file)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := os.Remove(filepath.Join(d.cfgDir, o.File())); err != nil {
				return err
			}
		}
		return nil
	}
	return teardown, nil
}

// explicit tracks the processes and files of a no-root run.
type explicit struct {
	d         *demo
	statePath string
	procs     []*exec.Cmd
	done      []chan struct{}
	listeners map[uint32]string // service port -> the front sidecar's bound address
}

func (e *explicit) file(path string) error {
	return local.RecordState(e.statePath, func(s *local.State) { s.Files = append(s.Files, path) })
}

func (e *explicit) start(ctx context.Context, role, name string, argv []string) error {
	logDir := filepath.Join(local.StateDir(e.d.opts.StateDir), "logs-"+e.d.opts.Prefix)
	logPath := filepath.Join(logDir, name+"."+role+".log")
	if err := e.file(logDir); err != nil {
		return err
	}
	if err := e.file(logPath); err != nil {
		return err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(e.d.out, "   starting %s %s: %s\n", role, name, strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s %s: %w", role, name, err)
	}
	lf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	e.procs = append(e.procs, cmd)
	e.done = append(e.done, done)
	return local.RecordState(e.statePath, func(s *local.State) {
		s.Processes = append(s.Processes, local.Process{PID: cmd.Process.Pid, Role: role, Name: name, Argv: argv})
	})
}

// exited names a process that ended early.
func (e *explicit) exited() (string, bool) {
	for i, c := range e.procs {
		select {
		case <-e.done[i]:
			return strings.Join(c.Args, " "), true
		default:
		}
	}
	return "", false
}

func (e *explicit) teardown() bool {
	for _, c := range e.procs {
		syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.After(3 * time.Second)
	for i, c := range e.procs {
		select {
		case <-e.done[i]:
		case <-deadline:
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-e.done[i]
		}
	}
	if err := local.Cleanup(context.Background(), e.statePath, e.d.opts.Prefix, nil); err != nil {
		e.d.printf("! teardown: %v", err)
		return false
	}
	return true
}

func waitDial(ctx context.Context, addr string, e *explicit) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if name, ok := e.exited(); ok {
			return fmt.Errorf("%s exited (logs in %s)", name, filepath.Join(local.StateDir(e.d.opts.StateDir), "logs-"+e.d.opts.Prefix))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setListen replaces the value of --listen in a demoapp command.
func setListen(argv []string, addr string) []string {
	out := append([]string(nil), argv...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "--listen" {
			out[i+1] = addr
			return out
		}
	}
	return append(out, "--listen", addr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	var out []int
	for i := 0; i < n; i++ {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
