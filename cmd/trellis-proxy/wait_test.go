package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func runWait(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"wait"}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// The hook returns only after the proxy turns ready.
func TestWaitReturnsOnceReady(t *testing.T) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz/ready" {
			http.NotFound(w, r)
			return
		}
		if polls.Add(1) < 4 {
			http.Error(w, "not ready: waiting for listeners", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("LIVE\n"))
	}))
	defer srv.Close()
	out, err := runWait(t, "--url", srv.URL+"/healthz/ready", "--period", "10ms", "--timeout", "30s")
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if n := polls.Load(); n != 4 {
		t.Errorf("got %d polls, want 4 (three 503s, then 200)", n)
	}
	if !strings.Contains(out, "proxy is ready") {
		t.Errorf("output: got %q", out)
	}
}

// A proxy that never turns ready fails the hook, naming the last answer.
func TestWaitTimesOut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	start := time.Now()
	_, err := runWait(t, "--url", srv.URL, "--period", "10ms", "--timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "proxy not ready after 300ms") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("got %v, want a timeout naming the 503", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("wait took %s with a 300ms timeout", d)
	}
	// Nothing listening: the connection error is reported.
	srv.Close()
	if _, err := runWait(t, "--url", srv.URL, "--period", "10ms", "--timeout", "200ms"); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("got %v, want a connection error", err)
	}
	if _, err := runWait(t, "--timeout", "0s"); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Errorf("got %v, want a flag error", err)
	}
}
