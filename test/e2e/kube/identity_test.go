package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// bins builds trellisd and trellis-proxy once for the package.
func bins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		d, err := os.MkdirTemp("", "trellis-kube-bin-")
		if err != nil {
			binErr = err
			return
		}
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", d+"/", "./cmd/trellisd", "./cmd/trellis-proxy")
		cmd.Dir = filepath.Join(filepath.Dir(self), "../../..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
		binDir = d
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// logFile is a process's combined output, readable while it runs.
type logFile struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logFile) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a binary until the test ends.
func start(t *testing.T, name string, env []string, args ...string) *logFile {
	t.Helper()
	cmd := exec.Command(name, args...)
	out := &logFile{}
	cmd.Stdout, cmd.Stderr, cmd.Env = out, out, env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out)
		}
	})
	return out
}

// podEnv resolves the injected proxy container's environment the way the
// kubelet would for pod (field references), as KEY=VALUE.
func podEnv(t *testing.T, c corev1.Container, pod *corev1.Pod) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
			continue
		}
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			env[e.Name] = pod.Name
		case "metadata.namespace":
			env[e.Name] = pod.Namespace
		case "spec.serviceAccountName":
			env[e.Name] = pod.Spec.ServiceAccountName
		case "status.podIP", "status.hostIP":
			env[e.Name] = "127.0.0.1"
		default:
			t.Fatalf("env %s: field %s not resolved by the test", e.Name, e.ValueFrom.FieldRef.FieldPath)
		}
	}
	return env
}

func proxyContainer(t *testing.T, pod *corev1.Pod) corev1.Container {
	t.Helper()
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == inject.ProxyContainerName {
			return c
		}
	}
	t.Fatalf("pod %s has no %s container", pod.Name, inject.ProxyContainerName)
	return corev1.Container{}
}

func certsOf(t *testing.T, admin string) *adminv3.Certificates {
	resp, err := http.Get("http://" + admin + "/certs")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out adminv3.Certificates
	if protojson.Unmarshal(b, &out) != nil {
		return nil
	}
	return &out
}

// TestInjectedSidecarGetsItsIdentity: on a real kube-apiserver, the real
// trellisd (--kube) publishes istio-ca-root-cert into the workload's
// namespace; a pod injected by trellisd's injector (install's config)
// mounts the projected istio-ca token and that ConfigMap and names the CA
// in CA_ADDR; a real trellis-proxy, run with the injected container's
// arguments and environment and the files the kubelet would project (a
// TokenRequest for the pod's ServiceAccount with audience istio-ca, the
// ConfigMap's root-cert.pem), gets a certificate for
// spiffe://cluster.local/ns/NS/sa/SA. A token of another ServiceAccount
// gets no certificate for that identity, with a clear error.
func TestInjectedSidecarGetsItsIdentity(t *testing.T) {
	env := kubetest.Shared(t)
	c := env.Clients.Kube
	ctx := kubetest.Context(t)
	bin := bins(t)
	const sys, ns, sa = "id-system", "id-shop", "reviews"
	for _, n := range []string{sys, ns} {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{sa, "intruder"} {
		if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	xdsAddr, caAddr := freeAddr(t), freeAddr(t)
	start(t, filepath.Join(bin, "trellisd"), os.Environ(), "--kube", "--kubeconfig", env.Kubeconfig, "--namespace", sys,
		"--xds-address", xdsAddr, "--ca-address", caAddr, "--cacerts-dir", filepath.Join(t.TempDir(), "none"),
		"--debug-address", "", "--metrics-address", "", "--dashboard-address", "")

	// The pod, through the injector with the install's config for a
	// control plane in sys.
	s, err := install.Load(install.Options{Set: []string{"profile=default", "values.global.istioNamespace=" + sys}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := install.InjectConfig(s)
	target, _ := inject.ParseKubeVersion("1.32")
	in := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1-abc", Namespace: ns, Labels: map[string]string{"app": "reviews"}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "reviews", Image: "reviews:1"}}},
	}
	injected, err := inject.Pod(cfg, target, in)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := c.CoreV1().Pods(ns).Create(ctx, injected, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server refused the injected pod: %v", err)
	}
	proxy := proxyContainer(t, pod)
	mounts := map[string]string{}
	for _, m := range proxy.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var tokenVol, rootVol *corev1.Volume
	for i, v := range pod.Spec.Volumes {
		switch v.Name {
		case inject.TokenVolume:
			tokenVol = &pod.Spec.Volumes[i]
		case inject.RootCertVolume:
			rootVol = &pod.Spec.Volumes[i]
		}
	}
	if tokenVol == nil || tokenVol.Projected == nil || len(tokenVol.Projected.Sources) != 1 || tokenVol.Projected.Sources[0].ServiceAccountToken == nil ||
		tokenVol.Projected.Sources[0].ServiceAccountToken.Audience != "istio-ca" || tokenVol.Projected.Sources[0].ServiceAccountToken.Path != "istio-token" ||
		mounts[inject.TokenVolume] != "/var/run/secrets/tokens" {
		t.Fatalf("token volume: got %+v mounted at %q; want a projected ServiceAccount token, audience istio-ca, path istio-token, at /var/run/secrets/tokens", tokenVol, mounts[inject.TokenVolume])
	}
	if rootVol == nil || rootVol.ConfigMap == nil || rootVol.ConfigMap.Name != "istio-ca-root-cert" || mounts[inject.RootCertVolume] != "/var/run/secrets/istio" {
		t.Fatalf("root volume: got %+v mounted at %q; want ConfigMap istio-ca-root-cert at /var/run/secrets/istio", rootVol, mounts[inject.RootCertVolume])
	}
	penv := podEnv(t, proxy, pod)
	if want := "trellisd." + sys + ".svc:15012"; penv["CA_ADDR"] != want {
		t.Fatalf("CA_ADDR: got %q, want %q", penv["CA_ADDR"], want)
	}
	if want := "trellisd." + sys + ".svc:15010"; penv["XDS_ADDRESS"] != want {
		t.Fatalf("XDS_ADDRESS: got %q, want %q", penv["XDS_ADDRESS"], want)
	}

	// What the kubelet projects: the published trust bundle and a token
	// for the volume's audience.
	var rootPEM string
	waitFor(t, "istio-ca-root-cert in "+ns, func() bool {
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			return false
		}
		rootPEM = cm.Data["root-cert.pem"]
		return strings.Contains(rootPEM, "BEGIN CERTIFICATE")
	})
	src := tokenVol.Projected.Sources[0].ServiceAccountToken

	run := func(tokenSA string) (admin string, log *logFile) {
		dir := t.TempDir()
		tokenPath := filepath.Join(dir, strings.TrimPrefix(mounts[inject.TokenVolume], "/"), src.Path)
		rootPath := filepath.Join(dir, strings.TrimPrefix(mounts[inject.RootCertVolume], "/"), "root-cert.pem")
		os.MkdirAll(filepath.Dir(tokenPath), 0o755)
		os.MkdirAll(filepath.Dir(rootPath), 0o755)
		os.WriteFile(tokenPath, []byte(requestToken(t, ctx, c, ns, tokenSA, src.Audience, *src.ExpirationSeconds)), 0o600)
		os.WriteFile(rootPath, []byte(rootPEM), 0o644)
		// The pod's names resolve in a cluster; here trellisd listens on
		// loopback, so the addresses are rewritten and the CA's name
		// (trellisd.<ns>.svc, in its certificate) is verified as the pod would.
		caHost, _, _ := net.SplitHostPort(penv["CA_ADDR"])
		e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		for k, v := range penv {
			switch k {
			case "CA_ADDR":
				v = caAddr
			case "XDS_ADDRESS":
				v = xdsAddr
			}
			e = append(e, k+"="+v)
		}
		e = append(e, "TRELLIS_CA_SERVER_NAME="+caHost)
		admin = freeAddr(t)
		args := append(append([]string{}, proxy.Args...), "--xds-address", xdsAddr, "--log-level", "info",
			"--admin-address", admin, "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
			"--ca-token-file", tokenPath, "--ca-root-cert", rootPath)
		return admin, start(t, filepath.Join(bin, "trellis-proxy"), e, args...)
	}

	want := "spiffe://cluster.local/ns/" + ns + "/sa/" + sa
	admin, log := run(sa)
	waitFor(t, "the proxy's workload certificate on /certs", func() bool {
		cs := certsOf(t, admin)
		for _, cert := range cs.GetCertificates() {
			for _, d := range cert.GetCertChain() {
				if d.GetPath() == "sds:default" && len(d.GetSubjectAltNames()) == 1 && d.GetSubjectAltNames()[0].GetUri() == want {
					return true
				}
			}
		}
		return false
	})
	if !strings.Contains(log.String(), "identity: serving "+want) {
		t.Errorf("proxy log does not report serving %s:\n%s", want, log)
	}

	// The intruder's token, in a pod claiming to be reviews: refused.
	admin, log = run("intruder")
	intruder := "spiffe://cluster.local/ns/" + ns + "/sa/intruder"
	waitFor(t, "the proxy's refusal in its log", func() bool {
		l := log.String()
		return strings.Contains(l, "no certificate for "+want+" yet") && strings.Contains(l, "PermissionDenied") && strings.Contains(l, intruder)
	})
	if cs := certsOf(t, admin); cs == nil || len(cs.GetCertificates()) != 0 {
		b, _ := json.Marshal(cs)
		t.Errorf("proxy with another ServiceAccount's token: /certs got %s, want no certificate", b)
	}
}

func requestToken(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, sa, audience string, exp int64) string {
	t.Helper()
	tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}
