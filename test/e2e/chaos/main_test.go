package chaos

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
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

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(meshbin.Main(m))
}

// requireMesh skips without root and fails when the binaries did not build.
func requireMesh(t *testing.T) { meshbin.Require(t) }
