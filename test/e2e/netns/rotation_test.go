package netns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
)

// TestCertificateRotationUnderLoad: with 60-second workload certificates
// (trellisd's default and maximum, the proxies' SECRET_TTL) and STRICT
// mTLS, meshed calls on new connections run for longer than a renewal
// period (half the life); the sidecars' logs show a second certificate
// served, and not one call fails.
func TestCertificateRotationUnderLoad(t *testing.T) {
	requireMesh(t)
	m, _ := startMeshRunner(t, "t9r", 236, map[string]string{"mesh-mtls.yaml": fmt.Sprintf(strictMesh, "STRICT")},
		func(r *local.Runner) { r.CA.CertTTL = 60 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	load := frontLoad(ctx, m, 2)
	waitAnswering(t, load, "STRICT mesh not answering")
	serving := func(file string) int {
		b, _ := os.ReadFile(filepath.Join(m.LogDir(), file))
		return strings.Count(string(b), "identity: serving ")
	}
	total, ok := 0, 0
	for end := time.Now().Add(45 * time.Second); time.Now().Before(end) || serving("front.proxy.log") < 2 || serving("bill-v1.proxy.log") < 2; {
		if ctx.Err() != nil {
			t.Fatalf("no rotation seen: front served %d, bill-v1 %d certificates", serving("front.proxy.log"), serving("bill-v1.proxy.log"))
		}
		r, body, err := load(500)
		if err != nil {
			t.Fatalf("load: %v: %s", err, body)
		}
		total += r.Calls
		ok += r.Status[200]
	}
	t.Logf("%d calls, %d answered 200; certificates served: front %d, bill-v1 %d", total, ok, serving("front.proxy.log"), serving("bill-v1.proxy.log"))
	if ok != total {
		t.Errorf("across the rotation: %d of %d calls answered 200; want all", ok, total)
	}
}
