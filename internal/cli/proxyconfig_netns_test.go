package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// TestProxyConfigInsideNetns reads an admin API that only exists inside a
// workload's network namespace (as in the local mesh), found through the
// runner's state file.
func TestProxyConfigInsideNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns := fmt.Sprintf("p5pc%d", os.Getpid()%100000)
	ctx := context.Background()
	if err := netns.Add(ctx, ns); err != nil {
		t.Skipf("cannot create network namespace: %v", err)
	}
	t.Cleanup(func() { netns.Delete(context.Background(), ns) })
	dump, err := os.ReadFile(dumpFixture)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netns.Listen(ns, "tcp", "127.0.0.1:15000")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(dump) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	st := local.State{Prefix: "p5", Workloads: []local.StateWorkload{
		{Name: "sleep", Namespace: "sidecar", Netns: ns, IP: "10.1.0.9", AdminAddress: "127.0.0.1:15000"}}}
	b, _ := json.Marshal(st)
	os.WriteFile(filepath.Join(dir, "local-p5.json"), b, 0o644)
	out, err := runPC(t, "proxy-config", "cluster", "sleep", "--state-dir", dir, "--fqdn", "nginx.sidecar.svc.cluster.local")
	if err != nil {
		t.Fatalf("got %v\n%s", err, out)
	}
	if strings.Count(out, "nginx.sidecar.svc.cluster.local") != 2 {
		t.Errorf("got %q, want the two nginx clusters read from inside the namespace", out)
	}
}
