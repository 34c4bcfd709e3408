package multicluster

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// remoteMesh is what the user applies in the primary (cluster1): the
// worker's Service as a ServiceEntry whose one WorkloadEntry is the remote
// cluster's worker at 127.0.0.1 (loopback, no interception; the API
// server refuses loopback EndpointSlice addresses), its sidecar's 15006
// pointed at its app, and STRICT mTLS for the namespace.
const remoteMesh = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker, namespace: seed}
spec:
  hosts: [worker.seed.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-remote, namespace: seed}
spec:
  address: 127.0.0.1
  serviceAccount: worker
  network: network1
  ports: {http: {{WORKER_INBOUND}}}
  labels: {app: worker, version: burst, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: worker, namespace: seed}
spec:
  workloadSelector: {labels: {app: worker}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{WORKER_APP}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: seed}
spec:
  mtls: {mode: STRICT}
`

// TestPrimaryRemoteWorkloadCertificates: primary-remote with security on.
// cluster1's trellisd runs its CA; cluster2 (remote profile, no trellisd)
// is joined by its remote secret. A trellis-proxy with CLUSTER_ID cluster2
// and a ServiceAccount token issued by cluster2's API server gets its
// workload certificate (spiffe://cluster.local/ns/seed/sa/worker) from
// cluster1's trellisd, which reviews the token with cluster2's API server
// through the remote secret's kubeconfig; a cluster1 proxy with a cluster1
// token gets its own; STRICT mTLS requests then go from the cluster1
// proxy to the cluster2 one, whose metrics carry the caller's principal.
// A proxy naming a cluster the CA does not know is refused, naming the
// cluster; a cluster2 token presented as cluster1's is refused by
// cluster1's API server; once the remote secret is deleted, cluster2's
// tokens are refused.
func TestPrimaryRemoteWorkloadCertificates(t *testing.T) {
	ctx := kubetest.Context(t)
	dir := t.TempDir()
	caAddr, root := freeAddr(t), filepath.Join(dir, "root-cert.pem")
	c1 := startClusterArgs(t, ctx, "cluster1", "network1", "minimal", nil, "--ca-address", caAddr, "--ca-root-file", root)
	c2 := startClusterProfile(t, ctx, "cluster2", "network1", "remote")
	frontendTok := workloadToken(t, ctx, c1.env.Clients, "frontend")
	workerTok := workloadToken(t, ctx, c2.env.Clients, "worker")
	waitFor(t, "trellisd's trust bundle", func() bool { _, err := os.Stat(root); return err == nil })

	// Before cluster2 is joined its tokens are refused, naming the cluster.
	if _, err := requestCert(ctx, caAddr, root, workerTok, "cluster2", "worker"); err == nil || !strings.Contains(err.Error(), `cluster "cluster2" is unknown to this CA`) {
		t.Fatalf("cluster2 token before its remote secret: got %v, want refused as an unknown cluster", err)
	}
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	waitFor(t, "cluster1's CA accepting cluster2's token", func() bool {
		_, err := requestCert(ctx, caAddr, root, workerTok, "cluster2", "worker")
		return err == nil
	})

	app := appServer(t, "burst")
	workerIn := freeAddr(t)
	cfg := strings.NewReplacer("{{WORKER_INBOUND}}", port(workerIn), "{{WORKER_APP}}", port(app)).Replace(remoteMesh)
	kubectlApply(t, ctx, c1.env.Clients, []byte(cfg))

	workerAdmin, workerProm := freeAddr(t), freeAddr(t)
	caProxy(t, c1.xds, caAddr, root, workerTok, "cluster2", "worker", "app=worker,version=burst", workerAdmin, workerProm,
		fmt.Sprintf("0.0.0.0:8080=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freeAddr(t), freeAddr(t), workerIn))
	outbound, frontAdmin := freeAddr(t), freeAddr(t)
	caProxy(t, c1.xds, caAddr, root, frontendTok, "cluster1", "frontend", "app=frontend", frontAdmin, "",
		fmt.Sprintf("0.0.0.0:8080=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freeAddr(t), freeAddr(t)))

	for _, p := range []struct{ admin, sa string }{{workerAdmin, "worker"}, {frontAdmin, "frontend"}} {
		want := "spiffe://cluster.local/ns/seed/sa/" + p.sa
		var last string
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("last `trellis proxy-config secret` of %s: %s", p.sa, last)
			}
		})
		waitFor(t, p.sa+"'s workload certificate "+want, func() bool {
			var id string
			id, last = proxyIdentity(t, p.admin)
			return id == want
		})
	}
	waitFor(t, "a STRICT mTLS request from cluster1's proxy answered by cluster2's", func() bool {
		b, err := call(outbound)
		return err == nil && b == "burst"
	})
	const n = 20
	for i := 0; i < n; i++ {
		if b, err := call(outbound); err != nil || b != "burst" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
	}
	if got := inboundFrom(t, workerProm, "spiffe://cluster.local/ns/seed/sa/frontend"); got < n {
		t.Errorf("cluster2 proxy's istio_requests_total{reporter=destination,source_principal=frontend}: got %d, want at least %d (mTLS with the frontend's certificate)", got, n)
	}

	// A cluster the CA does not know.
	_, err := requestCert(ctx, caAddr, root, workerTok, "cluster3", "worker")
	if err == nil || !strings.Contains(err.Error(), `cluster "cluster3" is unknown to this CA`) || !strings.Contains(err.Error(), "create-remote-secret --name cluster3") {
		t.Errorf("a proxy of cluster3: got %v, want refused naming cluster3 and the fix", err)
	}
	// cluster2's token claimed as cluster1's: cluster1's API server does
	// not know its signer.
	if _, err := requestCert(ctx, caAddr, root, workerTok, "cluster1", "worker"); err == nil || !strings.Contains(err.Error(), "token rejected by the API server") {
		t.Errorf("cluster2's token sent as cluster1's: got %v, want rejected by cluster1's API server", err)
	}

	// Leaving: the secret deleted, cluster2's tokens are refused.
	if err := c1.env.Clients.Kube.CoreV1().Secrets(systemNS).Delete(ctx, "istio-remote-secret-cluster2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster2's tokens refused after its remote secret is deleted", func() bool {
		_, err := requestCert(ctx, caAddr, root, workerTok, "cluster2", "worker")
		return err != nil && strings.Contains(err.Error(), `cluster "cluster2" is unknown to this CA`)
	})
}

// workloadToken creates namespace seed and ServiceAccount sa in the cluster
// and returns a projected-style token for it (audience istio-ca), as the
// kubelet would mount for an injected pod.
func workloadToken(t *testing.T, ctx context.Context, c *kube.Clients, sa string) string {
	t.Helper()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	if _, err := c.Kube.CoreV1().ServiceAccounts(appNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(appNS).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{ca.Audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// requestCert asks the CA for sa's certificate as a proxy of cluster
// would (Istio's ClusterID metadata) and returns the leaf's SPIFFE ID.
func requestCert(ctx context.Context, caAddr, root, token, cluster, sa string) (string, error) {
	pemRoot, err := os.ReadFile(root)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemRoot)
	cc, err := grpc.NewClient(caAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.trellis-system.svc"})))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local/ns/" + appNS + "/sa/" + sa)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "ClusterID", cluster)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(cc).CreateCertificate(ctx,
		&securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	if err != nil {
		return "", err
	}
	b, _ := pem.Decode([]byte(resp.GetCertChain()[0]))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	return leaf.URIs[0].String(), nil
}

// caProxy runs trellis-proxy as an injected sidecar of cluster with its
// workload certificate from the CA: CA_ADDR, the trust bundle, the token
// file and ISTIO_META_CLUSTER_ID as the injector sets them.
func caProxy(t *testing.T, xds, caAddr, root, token, cluster, sa, labels, admin, prom, rebind string) {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "istio-token")
	if err := os.WriteFile(tokFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "trellis-proxy"), "--xds-address", xds, "--ip", "127.0.0.1", "--pod-name", sa+"-1",
		"--namespace", appNS, "--service-account", sa, "--labels", labels, "--admin-address", admin, "--ready-address", "",
		"--prometheus-address", prom, "--merged-address", "", "--rebind", rebind, "--drain-duration", "1s")
	cmd.Env = append(os.Environ(), "ISTIO_META_CLUSTER_ID="+cluster, "ISTIO_META_NETWORK=network1", "CA_ADDR="+caAddr,
		"TRELLIS_CA_SERVER_NAME=istiod.trellis-system.svc", "TRELLIS_CA_ROOT_CERT="+root, "TRELLIS_CA_TOKEN_FILE="+tokFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("trellis-proxy %s (%s) log:\n%s", sa, cluster, b)
		}
	})
}

// proxyIdentity is the SPIFFE ID of the workload certificate the proxy's
// admin /certs lists (its cert_chain), "" while it has none, and the body.
func proxyIdentity(t *testing.T, admin string) (string, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/certs")
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var certs struct {
		Certificates []struct {
			CertChain []struct {
				SubjectAltNames []struct {
					URI string `json:"uri"`
				} `json:"subject_alt_names"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &certs); err != nil {
		return "", fmt.Sprintf("%v: %s", err, body)
	}
	for _, c := range certs.Certificates {
		for _, cc := range c.CertChain {
			for _, san := range cc.SubjectAltNames {
				if strings.HasPrefix(san.URI, "spiffe://") {
					return san.URI, ""
				}
			}
		}
	}
	return "", string(body)
}

// appServer is the worker's app on a loopback port, answering name.
func appServer(t *testing.T, name string) string {
	t.Helper()
	addr := freeAddr(t)
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	go srv.ListenAndServe()
	t.Cleanup(func() { srv.Close() })
	return addr
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// inboundFrom sums the proxy's server-side istio_requests_total from
// callers with the principal.
func inboundFrom(t *testing.T, prom, principal string) int {
	t.Helper()
	resp, err := http.Get("http://" + prom + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `reporter="destination"`) &&
			strings.Contains(line, `source_principal="`+principal+`"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += int(v)
		}
	}
	return n
}
