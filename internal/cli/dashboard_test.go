package cli

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/dashboard"
	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/registry"
)

type emptyMesh struct{}

func (emptyMesh) Proxies() []dashboard.Proxy                             { return nil }
func (emptyMesh) Config() *config.Snapshot                               { return config.NewSnapshot(nil) }
func (emptyMesh) Registry() *registry.Snapshot                           { return &registry.Snapshot{} }
func (emptyMesh) FileIssues() (map[string][]string, map[string][]string) { return nil, nil }

func runDashboardCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"dashboard"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestDashboardCommand: `trellis dashboard` prints the URL of a dashboard
// that answers, finds a local mesh's from its state file, and says so when
// nothing answers.
func TestDashboardCommand(t *testing.T) {
	d, err := dashboard.New(dashboard.Options{Mesh: emptyMesh{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	out, err := runDashboardCLI(t, "--address", ln.Addr().String())
	if want := "http://" + ln.Addr().String() + "/\n"; err != nil || out != want {
		t.Errorf("--address: got %q, %v; want %q", out, err, want)
	}

	// A local mesh's state file names its bridge address.
	state := t.TempDir()
	path := local.StatePath(state, "t10c")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := local.RecordState(path, func(s *local.State) { s.Prefix, s.HostIP = "t10c", "127.0.0.1" }); err != nil {
		t.Fatal(err)
	}
	out, err = runDashboardCLI(t, "--prefix", "t10c", "--state-dir", state)
	if !strings.HasPrefix(out, "http://127.0.0.1:20001/\n") {
		t.Errorf("local mesh: got %q, want its bridge address with port 20001", out)
	}
	if err != nil && !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("local mesh not serving: got %v, want it to say the dashboard does not answer", err)
	}

	// No local mesh by that prefix: trellisd's default address.
	out, _ = runDashboardCLI(t, "--prefix", "none", "--state-dir", state)
	if !strings.HasPrefix(out, "http://"+dashboard.DefaultAddress+"/\n") {
		t.Errorf("no local mesh: got %q, want %s", out, dashboard.DefaultAddress)
	}

	ln.Close()
	srv.Close()
	if _, err := runDashboardCLI(t, "--address", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "--dashboard-address") {
		t.Errorf("nothing listening: got %v, want an error naming --dashboard-address", err)
	}
}
