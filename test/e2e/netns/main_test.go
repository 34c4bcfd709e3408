package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

func TestMain(m *testing.M) {
	os.Exit(meshbin.Main(m))
}

// requireMesh skips without root and fails when the binaries did not build.
func requireMesh(t *testing.T) { meshbin.Require(t) }

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// hostNAT is the host's iptables-save (both backends) without comments or
// counters, reduced to the lines the mesh could have added (ISTIO chains,
// the demo's subnets), so other programs' rules do not make it flaky.
func hostNAT(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		out, err := exec.Command(save).CombinedOutput()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "#") || !(strings.Contains(l, "ISTIO") || strings.Contains(l, "10.24")) {
				continue
			}
			b.WriteString(counters.ReplaceAllString(l, "") + "\n")
		}
	}
	return b.String()
}

// leftovers lists anything with the prefix or running from meshbin.Dir().
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(links), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(strings.TrimSuffix(f[1], ":"), prefix) {
			out = append(out, "link "+f[1])
		}
	}
	if ents, err := os.ReadDir("/etc/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				out = append(out, "hosts dir /etc/netns/"+e.Name())
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && meshbin.Dir() != "" && strings.Contains(string(b), meshbin.Dir()) {
			out = append(out, "process "+p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

func mkdir(p string) error { return os.MkdirAll(p, 0o755) }
