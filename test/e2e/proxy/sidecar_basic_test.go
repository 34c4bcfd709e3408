package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// trellisCLI builds the real `trellis` binary once, next to trellis-proxy
// (TestMain removes that directory).
func trellisCLI(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		bin := filepath.Join(filepath.Dir(proxyBin), "trellis")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/trellis-mesh/trellis/cmd/trellis").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("build trellis: %v\n%s", err, out)
			return
		}
		cliBin = bin
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// runCLI runs the trellis CLI and returns its stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(trellisCLI(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("trellis %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// TestSidecarBasicProxyConfig is scenario sidecar-basic: nginx (Service
// port 80 in namespace sidecar, here a ServiceEntry + WorkloadEntry for a
// real server on 127.0.0.1) and a toolbox workload with a sidecar. The real
// `trellis proxy-config listener|route|cluster|endpoint` against the
// toolbox sidecar's admin address shows the outbound listener and route
// "80", the cluster outbound|80||nginx.sidecar.svc.cluster.local and its
// HEALTHY endpoint, and requests through that listener reach nginx.
func TestSidecarBasicProxyConfig(t *testing.T) {
	const (
		fqdn    = "nginx.sidecar.svc.cluster.local"
		cluster = "outbound|80||" + fqdn
	)
	dir := t.TempDir()
	nginx := versionServer(t, "nginx")
	writeConfig(t, dir, "workloads.yaml", service("sidecar", "nginx", nginx, 80), nil)
	td := startTrellisd(t, dir, "")
	// toolbox's own IP differs from nginx's 127.0.0.1, so it is no instance
	// of nginx (a WorkloadEntry's address makes a proxy one) and gets no
	// inbound cluster. Its outbound listener 0.0.0.0:80 is rebound to local.
	const nodeID = "sidecar~127.0.0.2~toolbox.sidecar~sidecar.svc.cluster.local"
	local, admin := freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "toolbox", "--namespace", "sidecar",
		"--labels", "app=toolbox", "--admin-address", admin,
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", local, freePort(t), freePort(t)),
		"--drain-duration", "1s")
	waitHTTP(t, local, fqdn)
	if got := count(t, local, "nginx", 5, nil); got["nginx"] != 5 {
		t.Errorf("short name nginx through the sidecar: got %v, want 5 x nginx", got)
	}

	pc := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, append([]string{"proxy-config"}, append(args, "--admin-address", admin)...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	line := func(out string, words ...string) string {
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			ok := true
			for _, w := range words {
				if !containsField(f, w) {
					ok = false
					break
				}
			}
			if ok {
				return l
			}
		}
		return ""
	}

	clusters := pc("cluster")
	if line(clusters, fqdn, "80", "outbound", "EDS") == "" {
		t.Errorf("proxy-config cluster: no row for %s port 80 outbound EDS:\n%s", fqdn, clusters)
	}
	if only := pc("cluster", "--fqdn", fqdn); line(only, fqdn, "80") == "" || strings.Count(strings.TrimSpace(only), "\n") != 1 {
		t.Errorf("proxy-config cluster --fqdn %s: got\n%s\nwant the header and one row", fqdn, only)
	}

	endpoints := pc("endpoint", "--cluster", cluster)
	if line(endpoints, nginx, "HEALTHY", cluster) == "" {
		t.Errorf("proxy-config endpoint --cluster %s: no HEALTHY row for %s:\n%s", cluster, nginx, endpoints)
	}
	if all := pc("endpoint"); line(all, nginx, "HEALTHY", cluster) == "" {
		t.Errorf("proxy-config endpoint: no HEALTHY row for %s in %s:\n%s", nginx, cluster, all)
	}

	listeners := pc("listener", "--port", "80")
	if line(listeners, "0.0.0.0", "80") == "" || !strings.Contains(listeners, "Route: 80") {
		t.Errorf("proxy-config listener --port 80: want 0.0.0.0 80 with Route: 80, got:\n%s", listeners)
	}

	routes := pc("route", "--name", "80")
	if line(routes, "80", fqdn+":80", fqdn+",") == "" {
		t.Errorf("proxy-config route --name 80: no row for route 80 with vhost %s:80:\n%s", fqdn, routes)
	}
	// The short output elides domains; the JSON has them all: what a
	// client in namespace sidecar may call nginx by, and its address.
	var rcs []struct {
		Name         string `json:"name"`
		VirtualHosts []struct {
			Name    string   `json:"name"`
			Domains []string `json:"domains"`
		} `json:"virtualHosts"`
	}
	if err := json.Unmarshal([]byte(pc("route", "--name", "80", "-o", "json")), &rcs); err != nil {
		t.Fatalf("proxy-config route -o json: %v", err)
	}
	var domains []string
	for _, rc := range rcs {
		for _, vh := range rc.VirtualHosts {
			if rc.Name == "80" && vh.Name == fqdn+":80" {
				domains = vh.Domains
			}
		}
	}
	for _, d := range []string{fqdn, "nginx", "nginx.sidecar", "nginx.sidecar.svc", "240.240.1.80"} {
		if !slices.Contains(domains, d) {
			t.Errorf("route 80 vhost %s:80 domains: got %v, want %q among them", fqdn, domains, d)
		}
	}
	if boot := pc("bootstrap", "-o", "json"); !strings.Contains(boot, nodeID) {
		t.Errorf("proxy-config bootstrap lacks node id %q:\n%.2000s", nodeID, boot)
	}
	if line(clusters, "inbound") != "" {
		t.Errorf("proxy-config cluster: toolbox serves nothing, want no inbound cluster:\n%s", clusters)
	}
	t.Logf("cluster:\n%s\nendpoint:\n%s\nlistener:\n%s\nroute:\n%s", clusters, endpoints, listeners, routes)
}

func containsField(fields []string, w string) bool {
	for _, f := range fields {
		if f == w || strings.Contains(f, w) {
			return true
		}
	}
	return false
}
