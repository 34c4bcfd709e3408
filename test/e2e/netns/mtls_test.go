package netns

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

const strictMesh = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: %s}
`

// TestPeerAuthenticationInTheLocalMesh: in the local mesh (network
// namespaces, iptables interception, every sidecar with its certificate
// from trellisd's CA) a mesh-wide STRICT PeerAuthentication refuses a
// client without a sidecar (the host, dialling bill-service's workload IP;
// its connection is intercepted to the server's sidecar), while the front
// end's app, through its sidecar, gets its answers over mesh mTLS.
// Switched to PERMISSIVE, both succeed.
func TestPeerAuthenticationInTheLocalMesh(t *testing.T) {
	requireMesh(t)
	m, cfg := startMeshWith(t, "t8s", 246, map[string]string{"mesh-mtls.yaml": fmt.Sprintf(strictMesh, "STRICT")})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bins, _ := local.FindBinaries(meshbin.Dir())
	bill, _ := m.Workload("bill-v1")
	meshed := func() error {
		body, err := m.Exec(ctx, "front", bins.Trellis, "demoapp", "load", "--calls", "5", "http://bill-service:9999/")
		if err != nil || !strings.Contains(string(body), `"this is bill-service-v1":5`) {
			return fmt.Errorf("front end -> bill-service:9999: got %s, %v; want 5 answers from bill-service-v1", body, err)
		}
		return nil
	}
	host := &http.Client{Timeout: 5 * time.Second}
	plaintext := func() error {
		resp, err := host.Get("http://" + bill.IP.String() + ":80/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "bill-service-v1") {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	eventually := func(what string, cond func() error) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			if err = cond(); err == nil {
				return
			}
		}
		for _, f := range []string{"front.proxy.log", "bill-v1.proxy.log", "trellisd.log"} {
			b, _ := os.ReadFile(filepath.Join(m.LogDir(), f))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("%s:\n%s", f, b)
		}
		if resp, err := m.HTTPClient("front").Get("http://127.0.0.1:15000/clusters"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "bill-service") && (strings.Contains(l, "cx_connect_fail") || strings.Contains(l, "rq_error")) {
					t.Log(l)
				}
			}
		}
		t.Fatalf("%s: %v", what, err)
	}

	eventually("STRICT: meshed client", meshed)
	for i := 0; i < 3; i++ {
		if err := plaintext(); err == nil {
			t.Fatal("STRICT: the host reached bill-service's workload in plaintext")
		}
	}
	if err := meshed(); err != nil {
		t.Fatalf("STRICT: %v", err)
	}

	tmp := filepath.Join(cfg, ".mesh-mtls.yaml.tmp")
	os.WriteFile(tmp, []byte(fmt.Sprintf(strictMesh, "PERMISSIVE")), 0o644)
	if err := os.Rename(tmp, filepath.Join(cfg, "mesh-mtls.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually("PERMISSIVE: plaintext client from the host", plaintext)
	if err := meshed(); err != nil {
		t.Fatalf("PERMISSIVE: %v", err)
	}
}
