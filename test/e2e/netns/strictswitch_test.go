package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// TestPermissiveToStrictUnderLoad: the front end's app calls bill-service
// through its sidecar, a new connection per call (so handshakes happen
// across the switch), as fast as 4 callers go (well above 200 requests a
// second on this mesh), while the mesh-wide PeerAuthentication goes from
// PERMISSIVE to STRICT. Meshed traffic already uses mTLS, so not one call
// may fail.
func TestPermissiveToStrictUnderLoad(t *testing.T) {
	requireMesh(t)
	m, cfg := startMeshWith(t, "t9p", 236, map[string]string{"mesh-mtls.yaml": fmt.Sprintf(strictMesh, "PERMISSIVE")})
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	bins, _ := local.FindBinaries(meshbin.Dir())
	// Wait until the mesh answers.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		body, err := m.Exec(ctx, "front", bins.Trellis, "demoapp", "load", "--calls", "5", "http://bill-service:9999/")
		var r demoapp.Result
		if err == nil && json.Unmarshal(body, &r) == nil && r.Status[200] == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mesh not answering: %s %v", body, err)
		}
	}
	// PERMISSIVE first: the host's plaintext call is answered.
	bill, _ := m.Workload("bill-v1")
	host := &http.Client{Timeout: 5 * time.Second}
	resp, err := host.Get("http://" + bill.IP.String() + ":80/")
	if err != nil {
		t.Fatalf("PERMISSIVE: the host's plaintext call: %v", err)
	}
	resp.Body.Close()
	const calls = 60000
	type result struct {
		r   demoapp.Result
		raw []byte
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r, body, err := frontLoad(ctx, m, 4)(calls)
		done <- result{r, body, err}
	}()
	time.Sleep(500 * time.Millisecond)
	tmp := filepath.Join(cfg, ".mesh-mtls.yaml.tmp")
	os.WriteFile(tmp, []byte(fmt.Sprintf(strictMesh, "STRICT")), 0o644)
	if err := os.Rename(tmp, filepath.Join(cfg, "mesh-mtls.yaml")); err != nil {
		t.Fatal(err)
	}
	// STRICT in force: the host's plaintext call is refused; the load
	// must still be running then.
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := host.Get("http://" + bill.IP.String() + ":80/")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("STRICT never took effect: the host still reaches bill-v1 in plaintext")
		}
	}
	switched := time.Since(start)
	select {
	case r := <-done:
		t.Fatalf("the load ended before STRICT took effect (%s); raise calls: %s %v", switched, r.raw, r.err)
	default:
	}
	res := <-done
	elapsed := time.Since(start)
	if res.err != nil {
		t.Fatalf("load: %v: %s", res.err, res.raw)
	}
	t.Logf("%d calls in %s (%.0f/s), STRICT in force after %s: %s", res.r.Calls, elapsed.Round(time.Millisecond), float64(res.r.Calls)/elapsed.Seconds(), switched.Round(time.Millisecond), res.raw)
	if res.r.Calls != calls || res.r.Status[200] != calls {
		t.Errorf("got %d calls, statuses %v; want all %d answered 200 across the switch", res.r.Calls, res.r.Status, calls)
	}
}
