package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/iptables"
	"github.com/trellis-mesh/trellis/internal/local"
)

// benchNamespace and echoService name the mesh's one service; its FQDN
// resolves in the client namespace through the mesh's hosts file.
const (
	benchNamespace = "bench"
	echoService    = "echo"
)

// benchSpec is the local mesh: a client workload (a sidecar, no app: the
// load generator runs in its namespace) and the echo server workload,
// whose app is `sidecar apps`.
func benchSpec(bench, fortio string) *local.Spec {
	return &local.Spec{
		Namespace: benchNamespace,
		Services: []local.Service{{
			Name: echoService,
			Ports: []local.ServicePort{
				{Name: "http", Port: meshHTTP, Protocol: "HTTP"},
				{Name: "grpc", Port: meshGRPC, Protocol: "GRPC"},
				{Name: "grpc-stream", Port: meshStream, Protocol: "GRPC"},
			},
			Selector: map[string]string{"app": echoService},
		}},
		Workloads: []local.Workload{
			{Name: "client", Labels: map[string]string{"app": "client", "version": "v1"}},
			{Name: "server", Labels: map[string]string{"app": echoService, "version": "v1"},
				Command: []string{bench, "apps", "-fortio", fortio}},
		},
	}
}

// interception is Istio's default capture with the direct and HAProxy
// ports of the server left out (excludeInboundPorts).
func interception() iptables.Options {
	o := iptables.DefaultOptions()
	for _, p := range append([]int{directHTTP, directGRPC, directStream}, haproxyInboundPorts...) {
		o.ExcludeInboundPorts = append(o.ExcludeInboundPorts, strconv.Itoa(p))
	}
	return o
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	binDir := fs.String("bin-dir", "", "directory holding trellis, trellisd and trellis-proxy")
	bench := fs.String("bench", "", "this program's path, runnable by uid 65534 (the server's app)")
	fortio := fs.String("fortio", "", "fortio binary, runnable by uid 65534")
	prefix := fs.String("prefix", "t80", "name prefix of the namespaces, veths and bridge")
	subnet := fs.String("subnet", "10.180.0.0/24", "the workloads' subnet")
	vips := fs.String("vip-subnet", "10.180.1.0/24", "the services' virtual IPs")
	stateDir := fs.String("state-dir", "", "state file, logs, config dir (made searchable by uid 1337)")
	envFile := fs.String("env", "", "write the mesh's shell variables here once it is ready")
	fs.Parse(args)
	if *binDir == "" || *bench == "" || *fortio == "" || *stateDir == "" || *envFile == "" {
		return fmt.Errorf("up: -bin-dir, -bench, -fortio, -state-dir and -env are required")
	}
	sn, err := netip.ParsePrefix(*subnet)
	if err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	vn, err := netip.ParsePrefix(*vips)
	if err != nil {
		return fmt.Errorf("-vip-subnet: %w", err)
	}
	bins, err := local.FindBinaries(*binDir)
	if err != nil {
		return err
	}
	// The sidecars (uid 1337) read trellisd's trust bundle in the state
	// dir: without it they call each other in plaintext.
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(*stateDir, 0o755); err != nil {
		return err
	}
	bins, unstage, err := bins.Stage(*stateDir, *prefix)
	if err != nil {
		return err
	}
	defer unstage()
	plan, err := local.NewPlan(benchSpec(*bench, *fortio), local.Options{Prefix: *prefix, Subnet: sn, VIPSubnet: vn})
	if err != nil {
		return err
	}
	cfg := filepath.Join(*stateDir, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return err
	}
	r := bins.MeshRunner(plan, cfg, *stateDir, os.Stderr)
	opts := interception()
	r.Iptables = &opts
	uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	m, err := r.Up(uctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := m.Down(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "sidecar: down:", err)
		}
	}()
	// Stop on SIGTERM from here on, also while waiting for readiness.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	if err := m.WaitReady(uctx); err != nil {
		return err
	}
	vars, err := meshVars(m, *stateDir, *prefix)
	if err != nil {
		return err
	}
	tmp := *envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(vars), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, *envFile); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "sidecar: mesh ready;", strings.ReplaceAll(strings.TrimSpace(vars), "\n", " "))
	<-stop
	return nil
}

// meshVars are the shell variables bench/sidecar.sh reads: where each
// workload is and the PIDs whose CPU and RSS it measures.
func meshVars(m *local.Mesh, stateDir, prefix string) (string, error) {
	st, err := local.ReadState(local.StatePath(stateDir, prefix))
	if err != nil {
		return "", err
	}
	pid := func(role, name string) (int, error) {
		for i := len(st.Processes) - 1; i >= 0; i-- {
			if p := st.Processes[i]; p.Role == role && p.Name == name {
				return p.PID, nil
			}
		}
		return 0, fmt.Errorf("no %s process of %s in the state file", role, name)
	}
	var b strings.Builder
	for _, w := range m.Plan.Workloads {
		up := strings.ToUpper(w.Name)
		fmt.Fprintf(&b, "%s_NS=%s\n%s_IP=%s\n", up, w.Netns, up, w.IP)
		p, err := pid("proxy", w.Name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s_PROXY_PID=%d\n", up, p)
	}
	td, err := pid("trellisd", "trellisd")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "TRELLISD_PID=%d\nMESH_LOGS=%s\n", td, m.LogDir())
	for _, s := range m.Plan.Services {
		if s.Name == echoService {
			fmt.Fprintf(&b, "ECHO_HOST=%s\nECHO_VIP=%s\n", s.FQDN, s.VIP)
		}
	}
	return b.String(), nil
}
