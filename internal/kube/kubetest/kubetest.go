package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trellis-mesh/trellis/internal/kube"
)

// Versions of the binaries the harness runs (the cache directory is keyed
// by them).
const (
	KubeVersion = "1.32.13"
	EtcdVersion = "3.5.16"
)

const token = "trellis-test-token"

// Env is a running API server.
type Env struct {
	Config     *rest.Config // admin (system:masters) over TLS, server cert not verified
	Kubeconfig string       // path of a kubeconfig file for Config
	Clients    *kube.Clients
	Dir        string // scratch directory, removed by Stop

	etcd, apiserver *exec.Cmd
	exited          map[*exec.Cmd]chan struct{} // closed when the process ends
}

// run starts cmd and records when it exits.
func (e *Env) run(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	if e.exited == nil {
		e.exited = map[*exec.Cmd]chan struct{}{}
	}
	ch := make(chan struct{})
	e.exited[cmd] = ch
	go func() { _ = cmd.Wait(); close(ch) }()
	return nil
}

func (e *Env) dead(cmd *exec.Cmd) bool {
	select {
	case <-e.exited[cmd]:
		return true
	default:
		return false
	}
}

// ErrNoBinaries is returned (wrapped) by Start when etcd or kube-apiserver
// cannot be found or built.
var ErrNoBinaries = errors.New("kube-apiserver and etcd binaries not available")

// BinDir finds the directory holding both binaries.
func BinDir() (string, error) {
	ok := func(d string) bool {
		for _, b := range []string{"etcd", "kube-apiserver"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("TRELLIS_KUBEBINS"); d != "" && ok(d) {
		return d, nil
	}
	cache := os.Getenv("TRELLIS_KUBEBINS_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "trellis", "kubebins")
	}
	d := filepath.Join(cache, KubeVersion+"_"+EtcdVersion)
	if ok(d) {
		return d, nil
	}
	// Let the repository's script fill the cache (extract or build).
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %s is empty and %v", ErrNoBinaries, d, err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "kubebins.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: scripts/kubebins.sh: %v", ErrNoBinaries, err)
	}
	d = string(trimNL(out))
	if !ok(d) {
		return "", fmt.Errorf("%w: scripts/kubebins.sh printed %q without both binaries", ErrNoBinaries, d)
	}
	return d, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "scripts", "kubebins.sh")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("scripts/kubebins.sh not found above the working directory")
		}
		d = p
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs etcd and kube-apiserver on free loopback ports and waits for
// /readyz. Stop must be called.
func Start() (*Env, error) {
	bins, err := BinDir()
	if err != nil {
		return nil, err
	}
	// Free ports are picked by binding and closing; another process may
	// take one before etcd or kube-apiserver binds it, so retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		dir, err := os.MkdirTemp("", "trellis-kubetest-")
		if err != nil {
			return nil, err
		}
		e := &Env{Dir: dir}
		if lastErr = e.start(bins); lastErr == nil {
			return e, nil
		}
		e.Stop()
	}
	return nil, lastErr
}

func (e *Env) start(bins string) error {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return fmt.Errorf("free port: %w", err)
		}
		ports[i] = p
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcdLog, err := os.Create(filepath.Join(e.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	e.etcd = exec.Command(filepath.Join(bins, "etcd"),
		"--data-dir", filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn")
	e.etcd.Stdout, e.etcd.Stderr = etcdLog, etcdLog
	e.etcd.SysProcAttr = dieWithParent()
	if err := e.run(e.etcd); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(e.Dir, "sa.key")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	tokenFile := filepath.Join(e.Dir, "tokens.csv")
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tokenFile, []byte(token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return err
	}
	apiLog, err := os.Create(filepath.Join(e.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	port := strconv.Itoa(ports[2])
	e.apiserver = exec.Command(filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers", clientURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", port,
		"--cert-dir", filepath.Join(e.Dir, "certs"),
		"--token-auth-file", tokenFile,
		"--service-account-key-file", keyFile,
		"--service-account-signing-key-file", keyFile,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--authorization-mode", "RBAC",
		"--disable-admission-plugins", "ServiceAccount",
		"--endpoint-reconciler-type", "none",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--allow-privileged=true",
		"-v", "1")
	e.apiserver.Stdout, e.apiserver.Stderr = apiLog, apiLog
	e.apiserver.SysProcAttr = dieWithParent()
	if err := e.run(e.apiserver); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	e.Config = &rest.Config{
		Host:            "https://127.0.0.1:" + port,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             500, Burst: 1000,
	}
	if err := e.waitReady(60 * time.Second); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: e.Config.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, e.Kubeconfig); err != nil {
		return err
	}
	e.Clients, err = kube.NewClients(e.Config)
	return err
}

func (e *Env) waitReady(limit time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		if e.dead(e.apiserver) || e.dead(e.etcd) {
			last = "a process exited (see the logs)"
			break
		}
		req, _ := http.NewRequest("GET", e.Config.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	tail := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(e.Dir, name))
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return b
	}
	return fmt.Errorf("kube-apiserver not ready (last: %s); kube-apiserver log tail:\n%s\netcd log tail:\n%s", last, tail("kube-apiserver.log"), tail("etcd.log"))
}

// Stop kills both processes and removes the scratch directory.
func (e *Env) Stop() {
	for _, c := range []*exec.Cmd{e.apiserver, e.etcd} {
		if ch, ok := e.exited[c]; ok {
			_ = c.Process.Kill()
			<-ch
		}
	}
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
	}
}

var (
	sharedOnce sync.Once
	shared     *Env
	sharedErr  error
)

// Shared returns the package's API server, starting it on first use. It
// skips the test when the binaries are unavailable and fails it when they
// are present but do not start.
func Shared(t testing.TB) *Env {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	if errors.Is(sharedErr, ErrNoBinaries) {
		t.Skipf("skipping: %v (run scripts/kubebins.sh)", sharedErr)
	}
	if sharedErr != nil {
		t.Fatalf("start kube-apiserver: %v", sharedErr)
	}
	return shared
}

// Main runs the package's tests and stops the shared API server after.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Context returns a context cancelled at the end of the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
