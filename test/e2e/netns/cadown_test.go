package netns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
)

// TestTrafficFlowsWithTrellisdDown: with STRICT mTLS in force, trellisd
// (control plane and CA) is killed; the sidecars keep their config and
// certificates, so meshed calls, each on a new connection (a new mTLS
// handshake with the existing certificates), keep being answered. The
// outage lasts 10 s by default and 2 minutes (the figure) when
// TRELLIS_LONG=1 is set.
func TestTrafficFlowsWithTrellisdDown(t *testing.T) {
	requireMesh(t)
	m, cfg := startMeshWith(t, "t9k", 237, map[string]string{"mesh-mtls.yaml": fmt.Sprintf(strictMesh, "STRICT")})
	outage := 10 * time.Second
	if os.Getenv("TRELLIS_LONG") == "1" {
		outage = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), outage+120*time.Second)
	defer cancel()
	load := frontLoad(ctx, m, 2)
	waitAnswering(t, load, "STRICT mesh not answering before the outage")
	st, err := local.ReadState(local.StatePath(filepath.Dir(cfg), "t9k"))
	if err != nil || st == nil {
		t.Fatalf("mesh state: %v", err)
	}
	pid := 0
	for _, p := range st.Processes {
		if p.Role == "trellisd" {
			pid = p.PID
		}
	}
	if pid == 0 {
		t.Fatalf("no trellisd in the mesh state %+v", st.Processes)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill trellisd %d: %v", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("trellisd did not die")
		}
	}
	total, ok := 0, 0
	for end := time.Now().Add(outage); time.Now().Before(end); {
		r, body, err := load(500)
		if err != nil {
			t.Fatalf("load with trellisd down: %v: %s", err, body)
		}
		total += r.Calls
		ok += r.Status[200]
	}
	t.Logf("trellisd down %s: %d calls, %d answered 200", outage, total, ok)
	if total == 0 || ok != total {
		t.Errorf("with trellisd down: %d of %d calls answered 200; want all", ok, total)
	}
}
