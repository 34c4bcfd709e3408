package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/trellisd"
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestWaitHoldsUntilTheProxyHasConfig is the fallback form's postStart
// hook against the real proxy: while trellisd is not reachable the proxy
// is not ready and `wait` keeps holding the app; once trellisd serves the
// proxy its config, `wait` returns.
func TestWaitHoldsUntilTheProxyHasConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xdsAddr, readyAddr := freeAddr(t), freeAddr(t)

	proxyDone := make(chan error, 1)
	go func() {
		cmd := rootCommand()
		cmd.SetArgs([]string{"--xds-address", xdsAddr, "--type", "sidecar", "--ip", "127.0.0.1",
			"--pod-name", "report-x7k2p", "--namespace", "batch", "--labels", "app=report",
			"--admin-address", freeAddr(t), "--ready-address", readyAddr, "--prometheus-address", "", "--merged-address", "",
			"--rebind", "0.0.0.0:15001=" + freeAddr(t) + ",0.0.0.0:15006=" + freeAddr(t), "--drain-duration", "100ms"})
		proxyDone <- cmd.ExecuteContext(ctx)
	}()

	waitDone := make(chan error, 1)
	go func() {
		_, err := runWait(t, "--url", "http://"+readyAddr+"/healthz/ready", "--period", "50ms", "--timeout", "60s")
		waitDone <- err
	}()
	// No control plane: the proxy has no config, so the app stays held.
	select {
	case err := <-waitDone:
		t.Fatalf("wait returned (%v) while the proxy had no config", err)
	case err := <-proxyDone:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if code := getStatus(t, "http://"+readyAddr+"/healthz/ready"); code == http.StatusOK {
		t.Fatalf("proxy without config answers /healthz/ready %d", code)
	}

	// trellisd comes up on the address the proxy dials.
	tdDone := make(chan error, 1)
	go func() {
		tdDone <- trellisd.Run(ctx, trellisd.Options{XDSAddress: xdsAddr, Debounce: 10 * time.Millisecond, Logf: t.Logf})
	}()
	select {
	case err := <-waitDone:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case err := <-tdDone:
		t.Fatalf("trellisd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("wait did not return within 60s of trellisd starting")
	}
	if code := getStatus(t, "http://"+readyAddr+"/healthz/ready"); code != http.StatusOK {
		t.Errorf("after wait returned, /healthz/ready answers %d", code)
	}
	cancel()
	if err := <-proxyDone; err != nil {
		t.Errorf("proxy: %v", err)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
