// Package meshbin builds trellis, trellisd and trellis-proxy once for an
// end-to-end test package that brings up a local mesh as root (network
// namespaces, iptables): its TestMain calls Main, its tests call Require
// and run the binaries from Dir.
package meshbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

var (
	dir      string
	buildErr error
)

// Main builds the binaries (only as root: without root every mesh test
// skips) into a directory the proxy's uid 1337 and the apps' uid 65534 can
// read, runs the tests, removes the directory and returns the exit code.
func Main(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	d, err := os.MkdirTemp("", "trellis-e2e-bin-")
	if err != nil {
		buildErr = err
		return m.Run()
	}
	defer os.RemoveAll(d)
	os.Chmod(d, 0o755)
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", d+"/", "./cmd/trellis", "./cmd/trellisd", "./cmd/trellis-proxy")
	cmd.Dir = filepath.Join(filepath.Dir(self), "../../..")
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build: %v: %s", err, out)
		return m.Run()
	}
	dir = d
	return m.Run()
}

// Require skips t without root or without ip, iptables and setpriv, and
// fails it when the binaries did not build.
func Require(t testing.TB) {
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

// Dir is where the binaries are (empty before Main built them).
func Dir() string { return dir }
