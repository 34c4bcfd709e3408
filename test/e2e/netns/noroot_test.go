package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demo"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// TestDemoWithoutRoot runs `trellis demo` as an ordinary user (uid 65534):
// it must say why it cannot intercept and run the same scenarios with
// explicit proxy ports on 127.0.0.1, with the same outcomes.
func TestDemoWithoutRoot(t *testing.T) {
	requireMesh(t) // root is needed to switch to the ordinary user
	// t.TempDir's parent is private to root; the user needs its own dir.
	dir, err := os.MkdirTemp("", "trellis-noroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	report := filepath.Join(dir, "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		filepath.Join(meshbin.Dir(), "trellis"), "demo", "--bin-dir", meshbin.Dir(), "--calls", "1000", "--prefix", "t6u",
		"--state-dir", filepath.Join(dir, "state"), "--json", report)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("trellis demo (uid 65534) output:\n%s", out.String())
	if err != nil {
		t.Fatalf("trellis demo as uid 65534: %v", err)
	}
	if !strings.Contains(out.String(), "not running as root") {
		t.Errorf("output does not say why interception is off")
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep demo.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Intercept {
		t.Errorf("got intercept true, want explicit ports without root")
	}
	if len(rep.Checks) != 10 {
		t.Errorf("got %d checks, want 10", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("check %q: got %s, want %s", c.Name, c.Got, c.Want)
		}
	}
	if s := rep.Step("weighted"); s == nil || math.Abs(s.Result.Percent(demo.BillV2)-10) > 3 {
		t.Errorf("weighted step: got %+v, want v2 at 10%% ±3", s)
	}
	if left := leftovers(t, "t6u"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "state")); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("state dir not empty after teardown: %v", names)
	}
}
