package trellisd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture copies a testdata file into dir, replacing {{KEY}} placeholders.
func fixture(t *testing.T, dir, name string, vars map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	writeAtomic(t, filepath.Join(dir, name), s)
}

// writeAtomic replaces a file in one rename, as editors and kubectl do, so
// the watcher never reads half a file.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startTrellisd runs trellisd in-process on loopback ports until the test
// ends.
func startTrellisd(t *testing.T, o Options) *Server {
	t.Helper()
	o.XDSAddress = "127.0.0.1:0"
	o.DebugAddress = "127.0.0.1:0"
	o.MetricsAddress = "127.0.0.1:0"
	if o.Debounce == 0 {
		o.Debounce = 20 * time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ready := make(chan *Server, 1)
	o.Ready = func(s *Server) { ready <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("trellisd Run: %v", err)
		}
	})
	select {
	case s := <-ready:
		return s
	case err := <-done:
		t.Fatalf("trellisd Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("trellisd did not become ready")
	}
	return nil
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d %s, want 200", url, resp.StatusCode, b)
	}
	return b
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal(httpGet(t, url), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// eventually polls f until it returns nil, failing with its last error
// after a generous deadline (never a timing assertion: it only bounds a
// hang).
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
