package netns

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/local/netns"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// TestProxyIptablesCommand drives `trellis-proxy iptables` as the init
// step runs it: --dry-run prints Istio's rules, applying twice gives them
// once, and --cleanup restores iptables-save exactly.
func TestProxyIptablesCommand(t *testing.T) {
	requireMesh(t)
	ctx := context.Background()
	ns := "t6i-cmd"
	netns.Delete(ctx, ns)
	if err := netns.Add(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Delete(context.Background(), ns) })
	proxy := filepath.Join(meshbin.Dir(), "trellis-proxy")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns, proxy, "iptables"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("trellis-proxy iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	save := func() string {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-save: %v: %s", err, out)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "#") {
				keep = append(keep, counters.ReplaceAllString(l, ""))
			}
		}
		return strings.Join(keep, "\n")
	}
	want, err := os.ReadFile("../../../internal/iptables/testdata/rules/default.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := run("--dry-run"); got != string(want) {
		t.Errorf("--dry-run: got\n%s\nwant\n%s", got, want)
	}
	// The table exists before (a user rule), so "as before" is comparable.
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.7/32", "-j", "RETURN").CombinedOutput(); err != nil {
		t.Fatalf("user rule: %v: %s", err, out)
	}
	before := save()
	run("-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020")
	once := save()
	run("-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020")
	if twice := save(); twice != once {
		t.Errorf("re-running changed the rules:\ngot\n%s\nwant\n%s", twice, once)
	}
	for _, want := range []string{"-A PREROUTING -p tcp -j ISTIO_INBOUND", "-A OUTPUT -j ISTIO_OUTPUT", "--to-ports 15001", "--to-ports 15006", "--uid-owner 1337"} {
		if !strings.Contains(once, want) {
			t.Errorf("installed rules lack %q:\n%s", want, once)
		}
	}
	if got := run("--cleanup", "--dry-run"); !strings.Contains(got, "-X ISTIO_OUTPUT") {
		t.Errorf("--cleanup --dry-run: got %q, want the chains it would delete", got)
	}
	run("--cleanup")
	if after := save(); after != before {
		t.Errorf("--cleanup: got\n%s\nwant (as before)\n%s", after, before)
	}
}
