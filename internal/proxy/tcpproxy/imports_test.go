package tcpproxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNetworkFiltersStayApart: the TCP proxy and the HTTP connection
// manager are sibling network filters; what they share (response flags,
// cluster access, stats) lives below both, so neither links the other.
func TestNetworkFiltersStayApart(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if d == "github.com/trellis-mesh/trellis/internal/proxy/httpconn" {
			t.Errorf("tcpproxy links %s", d)
		}
	}
}
