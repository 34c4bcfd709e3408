package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// localDrain is the shutdown drain of a local mesh's sidecars: the mesh
// stops its apps before their sidecars (Down), so a sidecar has nothing
// left to drain and a short drain keeps teardown quick.
const localDrain = "200ms"

// ProxyArgs is the sidecar's command line for a workload: its identity
// (node id, IP, labels) and trellisd's xDS address (empty: the bridge's).
// A workload from an injected pod keeps the pod's own proxy arguments
// (drain duration, concurrency, log level); its identity and trellisd's
// address follow them and win, as the downward API would fill them in.
func ProxyArgs(bin, xds string, p *Plan, w PlacedWorkload) []string {
	if xds == "" {
		xds = p.XDSAddress()
	}
	argv := []string{bin, "--drain-duration", localDrain}
	if w.Pod != nil {
		argv = append([]string{bin}, w.Pod.ProxyArgs...)
	}
	if w.EastWestGateway {
		argv = append(argv, "--type", "router")
	}
	return append(argv,
		"--xds-address", xds,
		"--node-id", w.NodeID(p.Options.DomainSuffix),
		"--ip", w.IP.String(),
		"--pod-name", w.Name,
		"--workload-name", w.Name,
		"--namespace", w.Namespace,
		"--labels", labelString(w.Labels),
	)
}

// DashboardPort is where a local mesh's trellisd serves its dashboard (on
// the bridge address, like debug and metrics).
const DashboardPort = "20001"

// DashboardURL is the dashboard of a local mesh whose bridge (host) address
// is hostIP.
func DashboardURL(hostIP string) string {
	return "http://" + net.JoinHostPort(hostIP, DashboardPort) + "/"
}

// TrellisdArgs is trellisd's command line for a local mesh: the config
// directory it watches, and xDS, debug (8080), metrics (15014), the CA
// (15012) and the dashboard (20001) on the bridge address only, so that
// meshes on other subnets can run beside it; the CA keeps its root in
// caDir, authenticates proxies by the credentials file and publishes its
// trust bundle for them.
func TrellisdArgs(bin, configDir, xdsAddress, caDir string, c CA) []string {
	host, _, err := net.SplitHostPort(xdsAddress)
	if err != nil {
		host = "127.0.0.1"
	}
	argv := []string{bin, "--config-dir", configDir, "--xds-address", xdsAddress,
		"--debug-address", net.JoinHostPort(host, "8080"), "--metrics-address", net.JoinHostPort(host, "15014"),
		"--ca-address", net.JoinHostPort(host, "15012"), "--ca-dir", caDir,
		"--workload-credentials", c.CredentialsFile, "--ca-root-file", c.RootCertFile,
		"--dashboard-address", net.JoinHostPort(host, DashboardPort)}
	if c.CertTTL > 0 {
		argv = append(argv, "--workload-cert-ttl", c.CertTTL.String(), "--max-workload-cert-ttl", c.CertTTL.String())
	}
	return argv
}

// labelString renders labels as "k1=v1,k2=v2", sorted.
func labelString(l map[string]string) string {
	kv := make([]string, 0, len(l))
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// MeshRunner returns a Runner for the real programs: rules installed by
// `trellis-proxy iptables` in each namespace, trellisd started on the
// bridge address watching configDir (its log in the state dir), and a
// trellis-proxy per workload.
func (b Binaries) MeshRunner(plan *Plan, configDir, stateDir string, log io.Writer) *Runner {
	caDir, caf := caFiles(stateDir, plan.Options.Prefix)
	return &Runner{
		CA:              &caf,
		Plan:            plan,
		ConfigDir:       configDir,
		StateDir:        stateDir,
		Intercept:       true,
		IptablesCommand: []string{b.Proxy, "iptables"},
		// Each sidecar is in its own namespace, so all can be epoch 0 of
		// base id 0: hot-restartable (Mesh.HotRestartProxy).
		ProxyCommand: func(p *Plan, w PlacedWorkload) []string {
			return append(ProxyArgs(b.Proxy, "", p, w), "--restart-epoch", "0")
		},
		BeforeProcesses: func(ctx context.Context, m *Mesh) error {
			argv := TrellisdArgs(b.Trellisd, configDir, plan.XDSAddress(), caDir, caf)
			if log != nil {
				fmt.Fprintf(log, "starting trellisd: %s\n", strings.Join(argv, " "))
			}
			if err := m.TrackFile(m.LogDir()); err != nil {
				return err
			}
			if err := os.MkdirAll(m.LogDir(), 0o755); err != nil {
				return err
			}
			logPath := filepath.Join(m.LogDir(), "trellisd.log")
			lf, err := os.Create(logPath)
			if err != nil {
				return err
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdout, cmd.Stderr = lf, lf
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				lf.Close()
				return fmt.Errorf("start trellisd: %w", err)
			}
			lf.Close()
			if err := m.TrackFile(logPath); err != nil {
				return err
			}
			if err := m.Track("trellisd", "trellisd", cmd); err != nil {
				return err
			}
			if err := waitTCP(ctx, plan.XDSAddress(), m); err != nil {
				return err
			}
			// The proxies read the trust bundle as they start.
			return waitFile(ctx, caf.RootCertFile, m)
		},
		Log: log,
	}
}

// waitFile waits until trellisd has written path.
func waitFile(ctx context.Context, path string, m *Mesh) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		if name, exited := m.Exited(); exited {
			return fmt.Errorf("trellisd exited before writing %s: %s (see its log in %s)", path, name, StateDir(m.r.StateDir))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("trellisd did not write its trust bundle %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitTCP waits until addr accepts connections (trellisd is serving).
func waitTCP(ctx context.Context, addr string, m *Mesh) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if name, exited := m.Exited(); exited {
			return fmt.Errorf("trellisd exited before serving xDS on %s: %s (see its log in %s)", addr, name, StateDir(m.r.StateDir))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("trellisd is not serving xDS on %s: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
