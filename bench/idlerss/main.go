// Command idlerss measures trellis-proxy's resident memory while it idles
// as a sidecar under a real configuration. It writes a config directory of
// Istio YAML (ServiceEntries and WorkloadEntries for -services mesh
// services plus a TCP database, a VirtualService with a weighted split,
// retries and a timeout, a DestinationRule with subsets, a connection pool
// and outlier detection, PeerAuthentication STRICT mesh-wide, an
// AuthorizationPolicy and a RequestAuthentication with an inline JWKS on
// the workload), starts a real trellisd on it with its CA, then starts
// each given trellis-proxy binary -starts times, one at a time, as the
// sidecar of productpage: it fetches its workload certificate from the
// CA, receives listeners 15001/15006 and the outbound listeners over ADS
// (rebound to free loopback ports) and serves its readiness, Prometheus
// and merged-metrics endpoints. Once the proxy is ready (/healthz/ready
// 200, every xDS type ACKed without error, the certificate served) and has
// idled for -settle, idlerss reads VmRSS, RssAnon and RssFile from
// /proc/PID/status and splits Rss by mapping from /proc/PID/smaps.
//
//	go build -o /tmp/trellisd ./cmd/trellisd
//	CGO_ENABLED=0 go build -tags grpcnotrace -trimpath -ldflags="-s -w" -o /tmp/trellis-proxy ./cmd/trellis-proxy
//	go run ./bench/idlerss -trellisd /tmp/trellisd -proxy /tmp/trellis-proxy -starts 3
//
// Several -proxy binaries (comma-separated) are started alternately, so an
// A/B comparison shares the machine's conditions. Loopback only; no
// network namespace or root needed.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
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

	"github.com/trellis-mesh/trellis/internal/ca"
)

func main() {
	trellisd := flag.String("trellisd", "", "path to a built trellisd (required)")
	proxies := flag.String("proxy", "", "comma-separated trellis-proxy binaries to measure, started alternately (required)")
	starts := flag.Int("starts", 3, "starts of each binary")
	services := flag.Int("services", 10, "mesh services besides productpage's neighbours (2 endpoints each)")
	settle := flag.Duration("settle", 10*time.Second, "idle time after the proxy is ready, before reading /proc")
	env := flag.String("env", "", "extra environment for the proxies, comma-separated K=V (e.g. GODEBUG=inittrace=1)")
	keep := flag.Bool("keep", false, "keep the work directory (config, logs)")
	flag.Parse()
	if *trellisd == "" || *proxies == "" {
		fmt.Fprintln(os.Stderr, "idlerss: -trellisd and -proxy are required")
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*trellisd, strings.Split(*proxies, ","), *starts, *services, *settle, splitEnv(*env), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "idlerss:", err)
		os.Exit(1)
	}
}

func splitEnv(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// ports the mesh's services use; each outbound listener 0.0.0.0:PORT is
// rebound to a free loopback port.
var servicePorts = []int{80, 9080, 3306}

func run(trellisd string, bins []string, starts, services int, settle time.Duration, env []string, keep bool) error {
	work, err := os.MkdirTemp("", "idlerss-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	cfg := filepath.Join(work, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return err
	}
	jwks, err := newJWKS()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg, "mesh.yaml"), []byte(meshConfig(services, jwks)), 0o644); err != nil {
		return err
	}
	token, err := ca.NewToken()
	if err != nil {
		return err
	}
	creds := filepath.Join(work, "workload-credentials")
	if err := ca.WriteCredentials(creds, map[string]ca.Caller{token: {Namespace: "shop", ServiceAccount: "productpage"}}); err != nil {
		return err
	}
	root := filepath.Join(work, "root-cert.pem")
	xdsAddr, caAddr := freePort(), freePort()
	td := exec.Command(trellisd, "--config-dir", cfg, "--xds-address", xdsAddr, "--ca-address", caAddr,
		"--ca-dir", filepath.Join(work, "ca"), "--workload-credentials", creds, "--ca-root-file", root,
		"--debug-address", "", "--metrics-address", "", "--dashboard-address", "", "--debounce", "10ms")
	tdLog, err := os.Create(filepath.Join(work, "trellisd.log"))
	if err != nil {
		return err
	}
	defer tdLog.Close()
	td.Stdout, td.Stderr = tdLog, tdLog
	if err := td.Start(); err != nil {
		return err
	}
	defer func() {
		td.Process.Signal(syscall.SIGTERM)
		td.Wait()
	}()
	if err := waitTCP(xdsAddr, 30*time.Second); err != nil {
		return fmt.Errorf("trellisd: %w (log %s)", err, tdLog.Name())
	}
	if err := waitTCP(caAddr, 30*time.Second); err != nil {
		return fmt.Errorf("trellisd's CA: %w", err)
	}
	if err := waitFile(root, 30*time.Second); err != nil {
		return fmt.Errorf("trellisd's trust bundle: %w", err)
	}

	results := make(map[string][]sample)
	for i := 0; i < starts; i++ {
		for _, bin := range bins {
			s, err := measure(bin, work, xdsAddr, caAddr, root, token, settle, env)
			if err != nil {
				return fmt.Errorf("%s, start %d: %w", bin, i+1, err)
			}
			results[bin] = append(results[bin], s)
			fmt.Printf("%s start %d: %s\n", bin, i+1, s)
		}
	}
	fmt.Println()
	fmt.Println("| binary | VmRSS MiB | RssAnon MiB | RssFile MiB | text MiB | rodata MiB | data+bss MiB | anon mappings MiB |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, bin := range bins {
		var col [7][]string
		for _, s := range results[bin] {
			for j, v := range []int{s.vmRSS, s.rssAnon, s.rssFile, s.text, s.rodata, s.data, s.anonMaps} {
				col[j] = append(col[j], mib(v))
			}
		}
		fmt.Printf("| %s |", filepath.Base(bin))
		for _, c := range col {
			fmt.Printf(" %s |", strings.Join(c, ", "))
		}
		fmt.Println()
	}
	return nil
}

// sample is one idle reading, in KiB.
type sample struct {
	vmRSS, rssAnon, rssFile          int
	text, rodata, data, anonMaps, so int
	// sections is the executable's sections, resident/size.
	sections []section
}

func (s sample) String() string {
	return fmt.Sprintf("VmRSS %s MiB (RssAnon %s, RssFile %s); text %s, rodata %s, data+bss %s, anon mappings %s, other %s",
		mib(s.vmRSS), mib(s.rssAnon), mib(s.rssFile), mib(s.text), mib(s.rodata), mib(s.data), mib(s.anonMaps), mib(s.so)) +
		"\n  sections resident/size MiB: " + formatSections(s.sections)
}

func mib(kib int) string { return strconv.FormatFloat(float64(kib)/1024, 'f', 1, 64) }

// measure starts one sidecar, waits until it is ready and idle, reads its
// memory and stops it.
func measure(bin, work, xdsAddr, caAddr, root, token string, settle time.Duration, env []string) (sample, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return sample{}, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return sample{}, err
	}
	io.WriteString(wr, token)
	wr.Close()
	var rebind []string
	for _, p := range append([]int{15001, 15006}, servicePorts...) {
		rebind = append(rebind, fmt.Sprintf("0.0.0.0:%d=%s", p, freePort()))
	}
	admin, ready := freePort(), freePort()
	cmd := exec.Command(abs, "--xds-address", xdsAddr, "--ip", "127.0.0.1", "--pod-name", "productpage-1", "--namespace", "shop",
		"--service-account", "productpage", "--labels", "app=productpage,version=v1",
		"--admin-address", admin, "--ready-address", ready, "--prometheus-address", freePort(), "--merged-address", freePort(),
		"--rebind", strings.Join(rebind, ","))
	cmd.Env = append(append(os.Environ(), "CA_ADDR="+caAddr, "TRELLIS_CA_TOKEN_FD=3", "TRELLIS_CA_ROOT_CERT="+root), env...)
	cmd.ExtraFiles = []*os.File{rd}
	logf, err := os.CreateTemp(work, "proxy-*.log")
	if err != nil {
		return sample{}, err
	}
	defer logf.Close()
	out := &logWatch{w: logf}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	rd.Close()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitReady(ready, admin, out, 60*time.Second); err != nil {
		return sample{}, fmt.Errorf("%w (log %s)", err, logf.Name())
	}
	time.Sleep(settle)
	s, err := readMemory(cmd.Process.Pid, abs)
	if err != nil {
		return s, err
	}
	s.sections, err = residentSections(cmd.Process.Pid, abs)
	return s, err
}

// logWatch copies the proxy's log to a file and remembers whether the
// identity agent is serving the workload certificate.
type logWatch struct {
	mu      sync.Mutex
	w       io.Writer
	line    []byte
	serving bool
}

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = append(l.line, p...)
	for {
		i := strings.IndexByte(string(l.line), '\n')
		if i < 0 {
			break
		}
		if strings.Contains(string(l.line[:i]), "identity: serving spiffe://") {
			l.serving = true
		}
		l.line = l.line[i+1:]
	}
	return l.w.Write(p)
}

func (l *logWatch) certServed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.serving
}

// waitReady polls the sidecar's /healthz/ready (what the kubelet probes)
// and its admin /xds until the config is applied: ready, every type
// ACKed with no NACK outstanding, and the certificate served.
func waitReady(ready, admin string, out *logWatch, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	why := "not started"
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		resp, err := c.Get("http://" + ready + "/healthz/ready")
		if err != nil {
			why = err.Error()
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			why = "/healthz/ready " + resp.Status
			continue
		}
		if !out.certServed() {
			why = "no workload certificate yet"
			continue
		}
		if why, err = xdsApplied(c, admin); err != nil {
			return err
		} else if why == "" {
			return nil
		}
	}
	return fmt.Errorf("sidecar not ready after %s: %s", timeout, why)
}

// xdsApplied reads admin /xds: "" when every type is ACKed and none has
// an error, else what is missing; an error for a NACK.
func xdsApplied(c *http.Client, admin string) (string, error) {
	resp, err := c.Get("http://" + admin + "/xds")
	if err != nil {
		return err.Error(), nil
	}
	defer resp.Body.Close()
	var st struct {
		Connected bool `json:"connected"`
		Types     []struct {
			TypeURL   string `json:"type_url"`
			LastError string `json:"last_error"`
			Acked     uint64 `json:"acked"`
		} `json:"types"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return "", fmt.Errorf("admin /xds: %w", err)
	}
	if !st.Connected {
		return "xDS not connected", nil
	}
	seen := map[string]bool{}
	for _, t := range st.Types {
		if t.LastError != "" {
			return "", fmt.Errorf("%s NACKed: %s", t.TypeURL, t.LastError)
		}
		if t.Acked > 0 {
			seen[t.TypeURL[strings.LastIndexByte(t.TypeURL, '.')+1:]] = true
		}
	}
	for _, want := range []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} {
		if !seen[want] {
			return want + " not ACKed yet", nil
		}
	}
	return "", nil
}

// readMemory reads /proc/PID/status and sums /proc/PID/smaps' Rss by
// mapping: the executable's text (r-x), read-only data (r--) and data
// and bss (rw-, with the anonymous bss mapping right after it), the
// other anonymous mappings (Go heap arenas, stacks, runtime metadata) and
// anything else (vdso, shared libraries).
func readMemory(pid int, exe string) (sample, error) {
	var s sample
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			s.vmRSS = v
		case "RssAnon:":
			s.rssAnon = v
		case "RssFile:":
			s.rssFile = v
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	var (
		dest     *int
		prevData bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "Rss:" {
			if dest != nil && len(fields) > 1 {
				v, _ := strconv.Atoi(fields[1])
				*dest += v
			}
			continue
		}
		if !strings.Contains(fields[0], "-") || len(fields) < 5 {
			continue // another field of the current mapping
		}
		perms, path := fields[1], ""
		if len(fields) > 5 {
			path = fields[5]
		}
		isData := false
		switch {
		case path == exe && strings.HasPrefix(perms, "r-x"):
			dest = &s.text
		case path == exe && strings.HasPrefix(perms, "r--"):
			dest = &s.rodata
		case path == exe:
			dest, isData = &s.data, true
		case path == "" && prevData:
			dest = &s.data // bss
		case path == "" || path == "[heap]":
			dest = &s.anonMaps
		default:
			dest = &s.so
		}
		prevData = isData
	}
	return s, sc.Err()
}

// newJWKS is an inline JWKS of a fresh ES256 key for the
// RequestAuthentication.
func newJWKS() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	pt := k.PublicKey.X.FillBytes(make([]byte, 32))
	y := k.PublicKey.Y.FillBytes(make([]byte, 32))
	b, err := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "bench-1", "alg": "ES256", "use": "sig", "x": enc(pt), "y": enc(y)}}})
	return string(b), err
}

// meshConfig is the config directory's one YAML file.
func meshConfig(services int, jwks string) string {
	var b strings.Builder
	se := func(name string, addr string, port int, proto string, selector string) {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: shop}
spec:
  hosts: [%[1]s.shop.svc.cluster.local]
  addresses: [%[2]s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: %[3]d, name: %[4]s, protocol: %[5]s}]
  workloadSelector: {labels: {app: %[6]s}}
`, name, addr, port, strings.ToLower(proto), proto, selector)
	}
	we := func(name, app, version, addr string) {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %s, namespace: shop}
spec:
  address: %s
  serviceAccount: %s
  labels: {app: %s, version: %s, security.istio.io/tlsMode: istio}
`, name, addr, app, app, version)
	}
	se("productpage", "240.240.9.1", 9080, "HTTP", "productpage")
	se("reviews", "240.240.9.2", 9080, "HTTP", "reviews")
	se("mysql", "240.240.9.3", 3306, "TCP", "mysql")
	we("reviews-v1", "reviews", "v1", "127.0.10.1")
	we("reviews-v2", "reviews", "v2", "127.0.10.2")
	we("mysql-1", "mysql", "v1", "127.0.10.3")
	for i := 0; i < services; i++ {
		name := fmt.Sprintf("svc-%02d", i)
		se(name, fmt.Sprintf("240.240.10.%d", i+1), 80, "HTTP", name)
		we(name+"-a", name, "v1", fmt.Sprintf("127.0.11.%d", 2*i+1))
		we(name+"-b", name, "v1", fmt.Sprintf("127.0.11.%d", 2*i+2))
	}
	// The sidecar's own workload: its inbound side (port 9080 on
	// virtualInbound, with the RBAC and JWT filters) comes from it.
	we("productpage-1", "productpage", "v1", "127.0.0.1")
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.shop.svc.cluster.local, subset: v2}}]
  - route:
    - {destination: {host: reviews.shop.svc.cluster.local, subset: v1}, weight: 90}
    - {destination: {host: reviews.shop.svc.cluster.local, subset: v2}, weight: 10}
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: "5xx,connect-failure"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 64, maxRequestsPerConnection: 100}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage, namespace: shop}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/*"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/productpage", "/api/*"]}}]
  - from: [{source: {requestPrincipals: ["https://issuer.bench.example/*"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: productpage, namespace: shop}
spec:
  selector: {matchLabels: {app: productpage}}
  jwtRules:
  - issuer: https://issuer.bench.example
    jwks: '%s'
`, jwks)
	return b.String()
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not written after %s", path, timeout)
}

func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening after %s", addr, timeout)
}
