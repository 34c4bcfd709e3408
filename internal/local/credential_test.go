package local

import (
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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// caResult is what the stand-in proxy reports.
type caResult struct {
	Own           string `json:"own"`   // SAN of the leaf it got, or the error
	Other         string `json:"other"` // the refusal for another identity
	CredsReadable bool   `json:"credsReadable"`
}

// caClient plays a proxy's certificate client: the token from descriptor
// TRELLIS_CA_TOKEN_FD, trellisd at CA_ADDR verified with
// TRELLIS_CA_ROOT_CERT, a CSR for its own identity and one for another.
func caClient(credsFile, otherSA string) {
	var res caResult
	defer func() {
		b, _ := json.Marshal(res)
		fmt.Println("RESULT " + string(b))
	}()
	if os.Getenv("TRELLIS_CA_TOKEN_FD") != "3" {
		res.Own = "TRELLIS_CA_TOKEN_FD is " + os.Getenv("TRELLIS_CA_TOKEN_FD")
		return
	}
	tok, err := io.ReadAll(os.NewFile(3, "ca-token"))
	if err != nil {
		res.Own = "read token: " + err.Error()
		return
	}
	_, err = os.ReadFile(credsFile)
	res.CredsReadable = err == nil
	roots, err := os.ReadFile(os.Getenv("TRELLIS_CA_ROOT_CERT"))
	if err != nil {
		res.Own = err.Error()
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	cc, err := grpc.NewClient(os.Getenv("CA_ADDR"), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "trellisd"})))
	if err != nil {
		res.Own = err.Error()
		return
	}
	defer cc.Close()
	ask := func(sa string) (string, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		u, _ := url.Parse("spiffe://cluster.local/ns/" + os.Getenv("POD_NAMESPACE") + "/sa/" + sa)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+string(tok))
		resp, err := securityv1alpha1.NewIstioCertificateServiceClient(cc).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
			Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
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
	if res.Own, err = ask(os.Getenv("TRELLIS_SERVICE_ACCOUNT")); err != nil {
		res.Own = err.Error()
	}
	if _, err := ask(otherSA); err != nil {
		res.Other = status.Convert(err).Code().String() + ": " + status.Convert(err).Message()
	}
}

// Each proxy of a local mesh gets its own credential through an inherited
// pipe, registered with a real trellisd by its hash: with it the proxy
// gets a certificate for its workload's identity, and only that one; the
// registry of hashes is unreadable to the proxies.
func TestProxiesGetTheirOwnCredential(t *testing.T) {
	requireRoot(t)
	bin := worldExecutable(t)
	r := testRunner(t, bin)
	state, err := os.MkdirTemp("", "trellis-ca-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	os.Chmod(state, 0o755)
	r.StateDir = state
	caDir, caf := caFiles(state, r.Plan.Options.Prefix)
	r.CA = &caf
	// bill-service-v1 runs as its own service account; the others as
	// "default". Each proxy also asks for the other one's identity.
	for i, w := range r.Plan.Workloads {
		if w.Name == "bill-service-v1" {
			r.Plan.Workloads[i].ServiceAccount = "billing"
		}
	}
	r.ProxyCommand = func(_ *Plan, w PlacedWorkload) []string {
		other := "billing"
		if w.ServiceAccountName() == "billing" {
			other = "default"
		}
		return []string{bin, "caclient", caf.CredentialsFile, other}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tctx, stopTrellisd := context.WithCancel(context.Background())
	tdone := make(chan error, 1)
	r.BeforeProcesses = func(ctx context.Context, m *Mesh) error {
		ready := make(chan *trellisd.Server, 1)
		go func() {
			tdone <- trellisd.Run(tctx, trellisd.Options{XDSAddress: "127.0.0.1:0", CAAddress: m.Plan.HostIP.String() + ":0",
				CADir: caDir, CACertsDir: filepath.Join(state, "none"), WorkloadCredentials: caf.CredentialsFile, CARootFile: caf.RootCertFile,
				Logf: t.Logf, Ready: func(s *trellisd.Server) { ready <- s }})
		}()
		select {
		case s := <-ready:
			m.r.CA.Address = s.CAAddr()
			return nil
		case err := <-tdone:
			return fmt.Errorf("trellisd: %v", err)
		}
	}
	m, err := r.Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Down(context.Background())
		stopTrellisd()
		<-tdone
	})
	if fi, err := os.Stat(caf.CredentialsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: got %v, %v; want mode 0600", fi, err)
	}
	creds, _ := os.ReadFile(caf.CredentialsFile)
	for _, w := range m.Plan.Workloads {
		res := waitResult(t, ctx, filepath.Join(m.LogDir(), w.Name+".proxy.log"))
		want := "spiffe://cluster.local/ns/istio-demo/sa/" + w.ServiceAccountName()
		if res.Own != want {
			t.Errorf("%s: own certificate: got %q, want %s", w.Name, res.Own, want)
		}
		if !strings.HasPrefix(res.Other, "PermissionDenied") || !strings.Contains(res.Other, "caller is "+want) {
			t.Errorf("%s: another identity: got %q, want PermissionDenied naming the caller", w.Name, res.Other)
		}
		if res.CredsReadable {
			t.Errorf("%s: the proxy can read the credentials registry", w.Name)
		}
	}
	if n := strings.Count(string(creds), " istio-demo default\n") + strings.Count(string(creds), " istio-demo billing\n"); n != len(m.Plan.Workloads) {
		t.Errorf("credentials file: got %d registrations, want %d:\n%s", n, len(m.Plan.Workloads), creds)
	}
	st := m.state.snapshot()
	if err := m.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, r, st)
	if _, err := os.Stat(filepath.Join(caDir, "ca-key.pem")); err != nil {
		t.Errorf("the CA's root was removed with the mesh: %v", err)
	}
}

func waitResult(t *testing.T, ctx context.Context, log string) caResult {
	t.Helper()
	for {
		b, _ := os.ReadFile(log)
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
				var res caResult
				if err := json.Unmarshal([]byte(rest), &res); err != nil {
					t.Fatalf("%s: %v", log, err)
				}
				return res
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no result: %s", log, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
