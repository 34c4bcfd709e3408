package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var (
	long = flag.Bool("chaos.long", false, "run each case for its long duration (by hand, not in CI)")
	rps  = flag.Int("chaos.rps", 200, "requests per second the load generator sends")
)

// durations of one case: load before, during and after the disruption.
type durations struct {
	before, during, after time.Duration
	// edits is how many config edits a churn case makes during the window.
	edits int
	// down is how long trellisd stays dead.
	down time.Duration
}

func caseDurations() durations {
	if *long {
		return durations{before: 10 * time.Second, during: 60 * time.Second, after: 10 * time.Second, edits: 100, down: 60 * time.Second}
	}
	return durations{before: 2 * time.Second, during: 10 * time.Second, after: 2 * time.Second, edits: 20, down: 5 * time.Second}
}

// binDir holds the binaries built once; empty when they could not be built
// (buildErr says why).
var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "trellis-chaos-bin-")
		if err != nil {
			buildErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755) // the proxy (uid 1337) and apps (65534) run from here
		root, err := filepath.Abs("../../..")
		if err != nil {
			buildErr = err
			return m.Run()
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/trellis", "./cmd/trellisd", "./cmd/trellis-proxy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
			return m.Run()
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// requireMesh skips without root and fails when the binaries did not build.
func requireMesh(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and iptables rules")
	}
	for _, bin := range []string{"ip", "iptables", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs it)", bin)
		}
	}
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
}
