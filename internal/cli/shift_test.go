package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuf is a bytes.Buffer safe to read while the command writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestShiftCommand runs `trellis shift --config-dir` against an HTTP
// server answering Prometheus' query API with a rate the test sets, and
// watches the VirtualService file and the printed decisions.
func TestShiftCommand(t *testing.T) {
	var rate atomic.Value
	rate.Store("17.2")
	var gotQuery atomic.Value
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		gotQuery.Store(r.Form.Get("query"))
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,%q]}]}}`, rate.Load())
	}))
	defer prom.Close()

	// The scenario's 50/50 file (VirtualService + DestinationRule).
	src, err := os.ReadFile("../shift/testdata/worker-virtualservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "worker-virtualservice.yaml")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}

	root := Root()
	out := &syncBuf{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"shift", "--prometheus", prom.URL, "--virtual-service", "default/worker-virtual-service",
		"--burst-subset", "burst", "--natural-subset", "primary", "--up", "15", "--down", "10",
		"--interval", "20ms", "--config-dir", dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	waitFile := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("file never held %q:\n%s\noutput:\n%s", want, b, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFile("subset: primary\n        port:\n          number: 80\n      weight: 0")
	waitFile("subset: burst\n        port:\n          number: 80\n      weight: 100")
	rate.Store("3")
	waitFile("subset: primary\n        port:\n          number: 80\n      weight: 100")
	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Fatalf("shift: %v", err)
	}
	for _, want := range []string{
		"rate 17.2 req/s > 15: shifting worker-virtual-service to burst (100%)",
		"rate 3.0 req/s < 10: shifting worker-virtual-service to primary (100%)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output: got %q, want a line %q", out.String(), want)
		}
	}
	wantQuery := `sum(rate(istio_requests_total{reporter="destination",destination_service="worker-service.default.svc.cluster.local",source_workload="frontend-deployment"}[1m]))`
	if got, _ := gotQuery.Load().(string); got != wantQuery {
		t.Errorf("query: got %s, want %s", got, wantQuery)
	}
}

func TestShiftCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"shift"}, "pass --config-dir DIR (local trellisd) or --kube"},
		{"both targets", []string{"shift", "--kube", "--config-dir", "."}, "--config-dir and --kube: pick one"},
		{"bad ref", []string{"shift", "--config-dir", ".", "--virtual-service", "a/b/c"}, "--virtual-service"},
		{"bad thresholds", []string{"shift", "--config-dir", ".", "--up", "5", "--down", "10"}, "down: got 10"},
		{"missing dir", []string{"shift", "--config-dir", "/nonexistent/trellis"}, "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCLI(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
