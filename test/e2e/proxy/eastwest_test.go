package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// eastWestMesh is seed 004's worker on two networks: the primary copy on
// network1 with the frontend, the burst copy on network2 behind network2's
// east-west gateway (a ServiceEntry labelled with its network, port 15443
// named tls, its WorkloadEntry where the gateway listens), both under
// STRICT mTLS, split 50/50 by a VirtualService. Every workload is on
// 127.0.0.1 (no interception), each at its own port; the Sidecar
// resources point each worker's rebound 15006 at its app.
const eastWestMesh = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker, namespace: shop}
spec:
  hosts: [worker.shop.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-primary, namespace: shop}
spec:
  address: 127.0.0.1
  serviceAccount: worker
  network: network1
  ports: {http: {{PRIMARY_INBOUND}}}
  labels: {app: worker, version: primary, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-burst, namespace: shop}
spec:
  address: 127.0.0.1
  serviceAccount: worker
  network: network2
  ports: {http: {{BURST_INBOUND}}}
  labels: {app: worker, version: burst, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {topology.istio.io/network: network2}
spec:
  hosts: [istio-eastwestgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 15443, name: tls, protocol: TLS}]
  workloadSelector: {labels: {istio: eastwestgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: eastwestgateway, namespace: istio-system}
spec:
  address: 127.0.0.1
  network: network2
  ports: {tls: {{GATEWAY_PORT}}}
  labels: {istio: eastwestgateway}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: worker, namespace: shop}
spec:
  host: worker.shop.svc.cluster.local
  subsets:
  - {name: primary, labels: {version: primary}}
  - {name: burst, labels: {version: burst}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: worker, namespace: shop}
spec:
  hosts: [worker.shop.svc.cluster.local]
  http:
  - route:
    - {destination: {host: worker.shop.svc.cluster.local, subset: primary}, weight: 50}
    - {destination: {host: worker.shop.svc.cluster.local, subset: burst}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: worker-primary, namespace: shop}
spec:
  workloadSelector: {labels: {app: worker, version: primary}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{PRIMARY_APP}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: worker-burst, namespace: shop}
spec:
  workloadSelector: {labels: {app: worker, version: burst}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{BURST_APP}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: STRICT}
`

// TestEastWestGateway: real trellisd with its CA, four real
// trellis-proxy processes (the frontend's sidecar on network1, the two
// workers' sidecars, network2's east-west gateway as a router). The
// frontend's EDS has the primary pod as it is and, for the burst subset,
// only the gateway's address (split horizon); the gateway routes the
// frontend's mTLS connection by its SNI outbound_.80_.burst_.worker... to
// the burst pod without opening it: the burst sidecar, under STRICT,
// reports the frontend's identity from its certificate, and the gateway's
// cluster of that name counts the connections. With the gateway stopped,
// burst is unreachable while primary still answers.
func TestEastWestGateway(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	primaryApp, burstApp := versionServer(t, "primary"), versionServer(t, "burst")
	primaryIn, burstIn, gwPort := freePort(t), freePort(t), freePort(t)
	writeConfig(t, cfg, "mesh.yaml", eastWestMesh, map[string]string{
		"PRIMARY_INBOUND": port(primaryIn), "BURST_INBOUND": port(burstIn), "GATEWAY_PORT": port(gwPort),
		"PRIMARY_APP": port(primaryApp), "BURST_APP": port(burstApp),
	})

	tokens := map[string]string{}
	callers := map[string]ca.Caller{}
	for _, sa := range []string{"frontend", "worker"} {
		tok, _ := ca.NewToken()
		tokens[sa] = tok
		callers[tok] = ca.Caller{Namespace: "shop", ServiceAccount: sa}
	}
	creds := filepath.Join(dir, "workload-credentials")
	if err := ca.WriteCredentials(creds, callers); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root-cert.pem")
	caAddr := freePort(t)
	plane := &caPlane{t: t, opts: trellisd.Options{ConfigDir: cfg, XDSAddress: "127.0.0.1:0", Debounce: 10 * time.Millisecond,
		CAAddress: caAddr, CADir: filepath.Join(dir, "ca"), WorkloadCredentials: creds, CARootFile: root, Logf: func(string, ...any) {}}}
	plane.start()
	t.Cleanup(plane.stop)
	td := plane.server

	sidecar := func(name, sa, labels, network, rebind, prom string) string {
		admin := freePort(t)
		startProxyWithCredential(t, tokens[sa], caAddr, root, []string{"ISTIO_META_NETWORK=" + network},
			"--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", name, "--namespace", "shop",
			"--service-account", sa, "--labels", labels, "--admin-address", admin,
			"--ready-address", "", "--prometheus-address", prom, "--merged-address", "", "--rebind", rebind, "--drain-duration", "1s")
		return admin
	}
	sidecar("worker-primary", "worker", "app=worker,version=primary", "network1",
		fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), primaryIn), "")
	burstProm := freePort(t)
	sidecar("worker-burst", "worker", "app=worker,version=burst", "network2",
		fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), burstIn), burstProm)
	outbound := freePort(t)
	frontAdmin := sidecar("frontend", "frontend", "app=frontend", "network1",
		fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)), "")
	gwAdmin := freePort(t)
	gwCmd := exec.Command(proxyBin, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1", "--pod-name", "istio-eastwestgateway-1",
		"--namespace", "istio-system", "--labels", "istio=eastwestgateway", "--admin-address", gwAdmin,
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "", "--rebind", "0.0.0.0:15443="+gwPort, "--drain-duration", "1s")
	gwCmd.Env = append(os.Environ(), "ISTIO_META_NETWORK=network2")
	gateway := startProxyCmd(t, gwCmd)

	const burstSNI = "outbound_.80_.burst_.worker.shop.svc.cluster.local"
	client := &http.Client{Timeout: 5 * time.Second}
	call := func() (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+outbound+"/", nil)
		req.Host = "worker.shop.svc.cluster.local"
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	dump := func() {
		for name, a := range map[string]string{"frontend": frontAdmin, "gateway": gwAdmin} {
			t.Logf("%s clusters:\n%s", name, adminGet(a, "/clusters"))
		}
	}
	// Both subsets answer through the frontend's sidecar.
	seen := map[string]bool{}
	warmBurst := 0
	deadline := time.Now().Add(30 * time.Second)
	for !(seen["primary"] && seen["burst"]) {
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("answered by %v within 30s, want primary and burst", seen)
		}
		if code, body, err := call(); err == nil && code == 200 {
			seen[body] = true
			if body == "burst" {
				warmBurst++
			}
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Split horizon: the frontend's burst cluster has the gateway's
	// address and not the burst pod's; its primary cluster has the pod.
	fc := adminGet(frontAdmin, "/clusters")
	if !strings.Contains(fc, "outbound|80|burst|worker.shop.svc.cluster.local::"+gwPort+"::") {
		dump()
		t.Fatalf("frontend's burst cluster does not go to the gateway %s", gwPort)
	}
	if strings.Contains(fc, "outbound|80|burst|worker.shop.svc.cluster.local::"+burstIn+"::") {
		t.Fatalf("frontend's burst cluster reaches the burst pod %s directly", burstIn)
	}
	if !strings.Contains(fc, "outbound|80|primary|worker.shop.svc.cluster.local::"+primaryIn+"::") {
		t.Fatalf("frontend's primary cluster lacks the primary pod %s", primaryIn)
	}

	counts := map[string]int{}
	const n = 200
	for i := 0; i < n; i++ {
		code, body, err := call()
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
		counts[body]++
	}
	t.Logf("%d requests: %v", n, counts)
	if counts["primary"] < n/4 || counts["burst"] < n/4 || counts["primary"]+counts["burst"] != n {
		t.Fatalf("50/50 split: got %v", counts)
	}

	// The gateway carried the burst connections on its SNI-matched chain
	// (its tcp_proxy stats, prefixed with the SNI), and nothing for
	// primary.
	if cx, rx := statValue(t, gwAdmin, "tcp."+burstSNI+".downstream_cx_total"), statValue(t, gwAdmin, "tcp."+burstSNI+".downstream_cx_rx_bytes_total"); cx < 1 || rx == 0 {
		dump()
		t.Fatalf("gateway chain %s: %d connections, %d bytes received; want some", burstSNI, cx, rx)
	}
	if cx := statValue(t, gwAdmin, "tcp.outbound_.80_.primary_.worker.shop.svc.cluster.local.downstream_cx_total"); cx != 0 {
		t.Fatalf("gateway carried %d primary connections, want 0", cx)
	}
	if cx := statValue(t, gwAdmin, "cluster."+burstSNI+".upstream_cx_total"); cx < 1 {
		t.Fatalf("gateway cluster %s: upstream_cx_total %d, want >= 1", burstSNI, cx)
	}
	// The gateway did not open the mTLS: the burst sidecar saw the
	// frontend's certificate.
	if err := wantProm(burstProm, map[string]string{"reporter": "destination", "response_code": "200",
		"connection_security_policy": "mutual_tls",
		"source_principal":           "spiffe://cluster.local/ns/shop/sa/frontend",
		"destination_principal":      "spiffe://cluster.local/ns/shop/sa/worker",
	}, map[string]float64{"istio_requests_total": float64(counts["burst"] + warmBurst)}); err != nil {
		t.Errorf("burst sidecar metrics: %v", err)
	}

	// The gateway is the only way to burst: stopped, burst fails and
	// primary still answers.
	gateway.cmd.Process.Signal(syscall.SIGKILL)
	gateway.cmd.Wait()
	failed, primary := 0, 0
	for i := 0; i < 40; i++ {
		code, body, err := call()
		switch {
		case err == nil && code == 200 && body == "primary":
			primary++
		case err == nil && code == 200:
			t.Fatalf("answered by %q with the gateway stopped", body)
		default:
			failed++
		}
	}
	if failed == 0 || primary == 0 {
		t.Fatalf("gateway stopped: %d failed, %d primary; want both", failed, primary)
	}
}

func adminGet(addr, path string) string {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// statValue reads one counter from a proxy's /stats.
func statValue(t *testing.T, admin, name string) int {
	t.Helper()
	body := adminGet(admin, "/stats?filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("stat %s: %q", name, v)
			}
			return n
		}
	}
	return 0
}
