package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/iptables"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// Runner brings a Plan up on this machine. It needs root; see Up.
type Runner struct {
	Plan *Plan
	// ConfigDir receives the ServiceEntry/WorkloadEntry YAML (file
	// PREFIX-workloads.yaml) for trellisd to pick up; empty skips it.
	ConfigDir string
	// StateDir holds the state file and process logs; see StateDir.
	StateDir string
	// Intercept installs the interception rules in every namespace.
	Intercept bool
	// IptablesCommand, when set, is run inside each namespace to install
	// the rules, e.g. {"/usr/local/bin/trellis-proxy", "iptables"}; the
	// flags for Iptables are appended. Nil applies them with
	// internal/iptables directly.
	IptablesCommand []string
	// Iptables are the interception options; zero means
	// iptables.DefaultOptions().
	Iptables *iptables.Options
	// ProxyCommand returns the sidecar's argv for a workload; nil runs no
	// sidecar. It runs as ProxyUID inside the workload's namespace.
	ProxyCommand func(p *Plan, w PlacedWorkload) []string
	// ProxyReady is the sidecar's readiness check inside the namespace: a
	// URL that must answer 200, "tcp:ADDR" that must accept, "listen:PORT"
	// that must have a listening TCP socket (checked without connecting, so
	// a capture port is never called directly), or "istio" (the default):
	// /healthz/ready on 15021 must answer 200 when the proxy serves it,
	// else the outbound capture listener 15001 must be bound (a proxy
	// binds it once it has its listeners).
	ProxyReady string
	// AppUID/AppGID run the apps; zero means 65534 (nobody).
	AppUID, AppGID int
	// ProxyUID runs the sidecars (uid and gid); zero means 1337.
	ProxyUID int
	// BeforeProcesses, when set, runs once the namespaces, rules and mesh
	// config exist and before any sidecar or app starts: the place to start
	// trellisd on the bridge address (and Track it).
	BeforeProcesses func(ctx context.Context, m *Mesh) error
	// CA, when set, gives each proxy its own credential for trellisd's CA
	// (see CA).
	CA *CA
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Mesh is a running local mesh.
type Mesh struct {
	Plan  *Plan
	state *stateFile
	r     *Runner

	tokens map[string]string // workload -> CA token, until its proxy starts

	mu    sync.Mutex
	procs []*exec.Cmd
	done  map[*exec.Cmd]chan struct{}
	roles map[*exec.Cmd]string
	// pods are the runs of workloads with PodSteps (pod.go's runner);
	// their processes end on purpose and do not count for Exited.
	pods   map[string]*PodRun
	inPods map[*exec.Cmd]bool
	// sidecars are the running proxy generation of each workload started
	// by Up (hotrestart.go); retired are the generations a hot restart
	// replaced, which end on purpose and do not count for Exited.
	sidecars map[string]*sidecar
	retired  map[*exec.Cmd]bool
}

func (r *Runner) logf(format string, a ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", a...)
	}
}

func (r *Runner) appIDs() (int, int) {
	u, g := r.AppUID, r.AppGID
	if u == 0 {
		u = 65534
	}
	if g == 0 {
		g = u
	}
	return u, g
}

func (r *Runner) proxyUID() int {
	if r.ProxyUID == 0 {
		return 1337
	}
	return r.ProxyUID
}

// Up removes the leftovers of an earlier run with the same prefix, then
// creates the bridge, one namespace per workload with its veth, address,
// default route, hosts file and interception rules, writes the mesh config
// for trellisd, and starts the sidecars and the apps. On error everything
// created so far is removed.
func (r *Runner) Up(ctx context.Context) (*Mesh, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("local mode with network namespaces needs root (it creates namespaces, a bridge and iptables rules); run it as root (with sudo from another account), or use explicit proxy ports without interception")
	}
	for _, bin := range []string{"ip", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is required (packages iproute2, util-linux; scripts/setup.sh installs them): %w", bin, err)
		}
	}
	p := r.Plan
	path := StatePath(r.StateDir, p.Options.Prefix)
	if err := Cleanup(ctx, path, p.Options.Prefix, r.Log); err != nil {
		return nil, fmt.Errorf("remove leftovers of an earlier run: %w", err)
	}
	m := &Mesh{Plan: p, r: r, state: &stateFile{path: path}, done: map[*exec.Cmd]chan struct{}{}, roles: map[*exec.Cmd]string{},
		pods: map[string]*PodRun{}, inPods: map[*exec.Cmd]bool{}, sidecars: map[string]*sidecar{}, retired: map[*exec.Cmd]bool{}}
	if err := m.state.update(func(s *State) {
		s.Prefix, s.Intercept, s.HostIP, s.XDSAddress = p.Options.Prefix, r.Intercept, p.HostIP.String(), p.XDSAddress()
	}); err != nil {
		return nil, err
	}
	if err := m.up(ctx); err != nil {
		m.Down(context.Background())
		return nil, err
	}
	return m, nil
}

func (m *Mesh) up(ctx context.Context) error {
	p, r := m.Plan, m.r
	for i, n := range p.Networks {
		r.logf("creating bridge %s (%s/%d) %s", n.Bridge, n.HostIP, n.Subnet.Bits(), n.Name)
		if err := m.state.update(func(s *State) {
			if i == 0 {
				s.Bridge = n.Bridge
			} else {
				s.Bridges = append(s.Bridges, n.Bridge)
			}
		}); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"link", "add", n.Bridge, "type", "bridge"},
			{"addr", "add", fmt.Sprintf("%s/%d", n.HostIP, n.Subnet.Bits()), "dev", n.Bridge},
			{"link", "set", n.Bridge, "up"},
		} {
			if err := netns.IP(ctx, args...); err != nil {
				return err
			}
		}
	}
	for _, w := range p.Workloads {
		if err := m.addWorkload(ctx, w); err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
	}
	if r.ConfigDir != "" {
		cfg, err := p.MeshConfig()
		if err != nil {
			return err
		}
		file := filepath.Join(r.ConfigDir, p.Options.Prefix+"-workloads.yaml")
		if err := m.state.update(func(s *State) { s.Files = append(s.Files, file) }); err != nil {
			return err
		}
		r.logf("registering %d workloads and %d services in %s", len(p.Workloads), len(p.Services), file)
		if err := os.WriteFile(file, cfg, 0o644); err != nil {
			return fmt.Errorf("write mesh config: %w", err)
		}
	}
	if r.CA != nil && r.ProxyCommand != nil {
		if err := m.issueCredentials(); err != nil {
			return err
		}
	}
	if r.BeforeProcesses != nil {
		if err := r.BeforeProcesses(ctx, m); err != nil {
			return err
		}
	}
	if r.ProxyCommand != nil {
		for _, w := range p.Workloads {
			if w.Pod != nil {
				continue // started with its app, in order, below
			}
			if _, err := m.startSidecar(ctx, w, r.ProxyCommand(p, w), 0); err != nil {
				return err
			}
		}
	}
	au, ag := r.appIDs()
	for _, w := range p.Workloads {
		if w.Pod != nil {
			if _, err := m.StartPod(ctx, w.Name); err != nil {
				return err
			}
			continue
		}
		if len(w.Command) == 0 {
			continue
		}
		if _, err := m.start(ctx, "app", w, au, ag, w.Command, w.Env, nil); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mesh) addWorkload(ctx context.Context, w PlacedWorkload) error {
	p, r := m.Plan, m.r
	r.logf("creating namespace %s for %s.%s at %s", w.Netns, w.Name, w.Namespace, w.IP)
	hostsDir := filepath.Join("/etc/netns", w.Netns)
	if err := m.state.update(func(s *State) {
		s.Netns = append(s.Netns, w.Netns)
		s.HostsDirs = append(s.HostsDirs, hostsDir)
		s.Workloads = append(s.Workloads, StateWorkload{Name: w.Name, Namespace: w.Namespace, Netns: w.Netns, IP: w.IP.String(),
			NodeID: w.NodeID(p.Options.DomainSuffix), AdminAddress: "127.0.0.1:15000"})
	}); err != nil {
		return err
	}
	if err := netns.Add(ctx, w.Netns); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", w.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", w.Netns},
		{"link", "set", w.HostVeth, "master", w.Net.Bridge},
		{"link", "set", w.HostVeth, "up"},
		{"-n", w.Netns, "addr", "add", fmt.Sprintf("%s/%d", w.IP, w.Net.Subnet.Bits()), "dev", "eth0"},
		{"-n", w.Netns, "link", "set", "eth0", "up"},
	}
	if !p.MultiNetwork() {
		steps = append(steps, []string{"-n", w.Netns, "route", "add", "default", "via", w.Net.HostIP.String()})
	} else {
		// Separate networks: no default route (the host would forward
		// between the bridges). The workload reaches its own bridge, the
		// services' VIPs (captured by its sidecar) and trellisd.
		steps = append(steps, []string{"-n", w.Netns, "route", "add", p.Options.VIPSubnet.String(), "via", w.Net.HostIP.String()})
		if w.Net.HostIP != p.HostIP {
			steps = append(steps, []string{"-n", w.Netns, "route", "add", p.HostIP.String() + "/32", "via", w.Net.HostIP.String()})
		}
	}
	if w.EastWestGateway {
		steps = append(steps,
			[]string{"link", "add", w.ExternalVeth, "type", "veth", "peer", "name", "eth1", "netns", w.Netns},
			[]string{"link", "set", w.ExternalVeth, "master", w.ExternalNet.Bridge},
			[]string{"link", "set", w.ExternalVeth, "up"},
			[]string{"-n", w.Netns, "addr", "add", fmt.Sprintf("%s/%d", w.ExternalIP, w.ExternalNet.Subnet.Bits()), "dev", "eth1"},
			[]string{"-n", w.Netns, "link", "set", "eth1", "up"},
		)
	}
	for _, args := range steps {
		if err := netns.IP(ctx, args...); err != nil {
			return err
		}
	}
	// Let the app (an ordinary user) bind ports below 1024, as in a pod.
	if err := netns.Do(w.Netns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0o644)
	}); err != nil {
		return fmt.Errorf("allow low ports: %w", err)
	}
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts"), []byte(p.Hosts(w)), 0o644); err != nil {
		return fmt.Errorf("write hosts file: %w", err)
	}
	if !r.Intercept || w.EastWestGateway {
		// A gateway proxies its listeners' traffic, like Istio's
		// gateways: no interception.
		return nil
	}
	opts := iptables.DefaultOptions()
	if r.Iptables != nil {
		opts = *r.Iptables
	}
	if w.Pod != nil && r.IptablesCommand == nil {
		return errors.New("a pod's init step needs the runner's IptablesCommand (trellis-proxy iptables)")
	}
	if r.IptablesCommand != nil {
		flags := IptablesFlags(opts)
		if w.Pod != nil {
			flags = w.Pod.Iptables // istio-init's own flags
		}
		argv := append(append([]string{"ip", "netns", "exec", w.Netns}, r.IptablesCommand...), flags...)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("install interception rules (%s): %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	a := &iptables.Applier{Runner: iptables.ExecRunner{Prefix: []string{"ip", "netns", "exec", w.Netns}}}
	if err := a.Apply(ctx, opts); err != nil {
		return fmt.Errorf("install interception rules: %w", err)
	}
	return nil
}

// IptablesFlags renders options as `trellis-proxy iptables` flags.
func IptablesFlags(o iptables.Options) []string {
	j := func(s []string) string { return strings.Join(s, ",") }
	f := []string{
		"-p", strconv.Itoa(o.ProxyPort), "-z", strconv.Itoa(o.InboundCapturePort),
		"-u", o.ProxyUID, "-g", o.ProxyGID,
		"-b", j(o.InboundPorts), "-d", j(o.ExcludeInboundPorts),
		"-i", j(o.IncludeOutboundIPRanges), "-x", j(o.ExcludeOutboundIPRanges),
		"-q", j(o.IncludeOutboundPorts), "-o", j(o.ExcludeOutboundPorts),
	}
	return f
}

// start runs argv inside w's namespace as uid:gid, logging to the state
// dir. A non-nil fd3 is the process's descriptor 3.
func (m *Mesh) start(ctx context.Context, role string, w PlacedWorkload, uid, gid int, argv, env []string, fd3 *os.File) (*exec.Cmd, error) {
	return m.startLogged(ctx, role, w.Name+"."+role+".log", w, uid, gid, argv, env, fd3)
}

// startLogged is start with the log file's name in the log dir.
func (m *Mesh) startLogged(ctx context.Context, role, logName string, w PlacedWorkload, uid, gid int, argv, env []string, fd3 *os.File) (*exec.Cmd, error) {
	logDir := m.LogDir()
	if err := m.TrackFile(logDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, logName)
	if err := m.TrackFile(logPath); err != nil {
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	full := append([]string{"ip", "netns", "exec", w.Netns, "setpriv",
		"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups", "--"}, argv...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "POD_NAME="+w.Name, "POD_NAMESPACE="+w.Namespace, "INSTANCE_IP="+w.IP.String(), "HOSTNAME="+w.Name)
	if w.Net.Name != "" {
		cmd.Env = append(cmd.Env, "ISTIO_META_NETWORK="+w.Net.Name)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if fd3 != nil {
		cmd.ExtraFiles = []*os.File{fd3}
	}
	m.r.logf("starting %s of %s as uid %d: %s", role, w.Name, uid, strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s of %s: %w", role, w.Name, err)
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.procs = append(m.procs, cmd)
	m.done[cmd] = done
	m.roles[cmd] = role
	m.mu.Unlock()
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	return cmd, m.state.update(func(s *State) {
		s.Processes = append(s.Processes, Process{PID: cmd.Process.Pid, Role: role, Name: w.Name, Argv: full})
	})
}

// LogDir holds the processes' logs (removed by Down).
func (m *Mesh) LogDir() string {
	return filepath.Join(StateDir(m.r.StateDir), "logs-"+m.Plan.Options.Prefix)
}

// Track records a process started outside the runner (trellisd) so that
// Down and Cleanup stop it too.
func (m *Mesh) Track(role, name string, cmd *exec.Cmd) error {
	done := make(chan struct{})
	m.mu.Lock()
	m.procs = append(m.procs, cmd)
	m.done[cmd] = done
	m.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	return m.state.update(func(s *State) {
		s.Processes = append(s.Processes, Process{PID: cmd.Process.Pid, Role: role, Name: name, Argv: cmd.Args})
	})
}

// TrackFile records a file to remove on Down.
func (m *Mesh) TrackFile(path string) error {
	return m.state.update(func(s *State) { s.Files = append(s.Files, path) })
}

// Exited reports whether a process the mesh started has ended, and names
// the first that did.
func (m *Mesh) Exited() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.procs {
		if m.inPods[c] || m.retired[c] {
			continue
		}
		select {
		case <-m.done[c]:
			return strings.Join(c.Args, " "), true
		default:
		}
	}
	return "", false
}

// Workload returns the placed workload with this name.
func (m *Mesh) Workload(name string) (PlacedWorkload, bool) {
	for _, w := range m.Plan.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return PlacedWorkload{}, false
}

// HTTPClient returns a client whose connections start inside the named
// workload's namespace (as root, so they are not captured: use Exec to
// call through the sidecar as the app would).
func (m *Mesh) HTTPClient(workload string) *http.Client {
	w, _ := m.Workload(workload)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, w.Netns, network, addr)
		},
	}}
}

// WaitReady waits until every app answers on its inbound ports and every
// sidecar reports ready, or ctx ends. A pod's proxy passed its gate before
// its app started; a pod that ran to completion is not waited for.
func (m *Mesh) WaitReady(ctx context.Context) error {
	for _, w := range m.Plan.Workloads {
		if w.Pod != nil {
			if r := m.Pod(w.Name); r == nil || r.Ended() {
				continue
			}
		}
		var checks []string
		if len(w.Command) > 0 {
			for _, port := range w.InboundPorts {
				checks = append(checks, "tcp:127.0.0.1:"+strconv.Itoa(int(port)))
			}
		}
		if m.r.ProxyCommand != nil && w.Pod == nil {
			check := m.r.ProxyReady
			if check == "" {
				check = "istio"
			}
			checks = append(checks, check)
		}
		for _, c := range checks {
			if err := m.waitOne(ctx, w, c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Mesh) waitOne(ctx context.Context, w PlacedWorkload, check string) error {
	var last error
	for {
		if name, exited := m.Exited(); exited {
			return fmt.Errorf("%s: waiting for %s: a process exited: %s (logs in %s)", w.Name, check, name, filepath.Join(StateDir(m.r.StateDir), "logs-"+m.Plan.Options.Prefix))
		}
		ok, err := m.probe(ctx, w, check)
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready: %v", w.Name, check, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe runs one readiness check (see Runner.ProxyReady).
func (m *Mesh) probe(ctx context.Context, w PlacedWorkload, check string) (bool, error) {
	if check == "istio" {
		if up, _ := isListening(w.Netns, "15021"); up {
			return m.probe(ctx, w, "http://127.0.0.1:15021/healthz/ready")
		}
		return m.probe(ctx, w, "listen:15001")
	}
	if port, ok := strings.CutPrefix(check, "listen:"); ok {
		up, err := isListening(w.Netns, port)
		if err == nil && !up {
			err = fmt.Errorf("nothing listens on port %s", port)
		}
		return up, err
	}
	if addr, ok := strings.CutPrefix(check, "tcp:"); ok {
		c, err := netns.Dial(ctx, w.Netns, "tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, check, nil)
	if err != nil {
		return false, err
	}
	resp, err := m.HTTPClient(w.Name).Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: status %d", check, resp.StatusCode)
	}
	return true, nil
}

// Exec runs argv inside a workload's namespace as the app user and returns
// its standard output; its traffic goes through the sidecar like the app's.
func (m *Mesh) Exec(ctx context.Context, workload string, argv ...string) ([]byte, error) {
	w, ok := m.Workload(workload)
	if !ok {
		return nil, fmt.Errorf("no workload %q", workload)
	}
	u, g := m.r.appIDs()
	full := append([]string{"netns", "exec", w.Netns, "setpriv", "--reuid=" + strconv.Itoa(u), "--regid=" + strconv.Itoa(g), "--clear-groups", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), workload, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Down stops every process and removes everything Up created: pods as
// a kubelet stops them (PodRun.Stop), then the other apps before their
// sidecars and trellisd, so the sidecars drain with nothing left to
// serve.
func (m *Mesh) Down(ctx context.Context) error {
	m.mu.Lock()
	var pods []*PodRun
	for _, r := range m.pods {
		pods = append(pods, r)
	}
	m.mu.Unlock()
	for _, r := range pods {
		r.Stop()
	}
	m.mu.Lock()
	var apps, rest []*exec.Cmd
	for _, c := range m.procs {
		select {
		case <-m.done[c]:
			continue // ended: its process group may be reused
		default:
		}
		if m.roles[c] == "app" {
			apps = append(apps, c)
		} else {
			rest = append(rest, c)
		}
	}
	m.mu.Unlock()
	m.terminate(apps, 3*time.Second)
	m.terminate(rest, 3*time.Second)
	return Cleanup(ctx, m.state.path, m.Plan.Options.Prefix, m.r.Log)
}

// terminate sends SIGTERM to the process groups of procs, waits up to
// grace for them to end, then kills what is left.
func (m *Mesh) terminate(procs []*exec.Cmd, grace time.Duration) {
	m.mu.Lock()
	done := make([]chan struct{}, len(procs))
	for i, c := range procs {
		done[i] = m.done[c]
	}
	m.mu.Unlock()
	for i, c := range procs {
		select {
		case <-done[i]:
			continue // ended: its process group id may be reused
		default:
		}
		syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for i := range procs {
		select {
		case <-done[i]:
		case <-deadline:
		}
	}
	for i, c := range procs {
		select {
		case <-done[i]:
		default:
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done[i]
		}
	}
}

// ExecIn runs argv in a named namespace as uid (and gid uid), with the
// namespace's hosts file, wiring the standard streams.
func ExecIn(ctx context.Context, ns string, uid int, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	full := append([]string{"netns", "exec", ns, "setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	return cmd.Run()
}

// isListening reports whether a TCP socket listens on port inside ns, read
// from the namespace's /proc/net/tcp{,6} without connecting to it.
func isListening(ns, port string) (bool, error) {
	n, err := strconv.Atoi(port)
	if err != nil {
		return false, fmt.Errorf("listen check: port %q: %w", port, err)
	}
	want := fmt.Sprintf(":%04X ", n)
	found := false
	err = netns.Do(ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				fields := strings.Fields(line)
				// sl local_address rem_address st ...; st 0A is LISTEN.
				if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1]+" ", want) {
					found = true
				}
			}
		}
		return nil
	})
	return found, err
}
