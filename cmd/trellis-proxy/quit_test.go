package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestQuitOnStatusPortEndsTheProxy is the fallback form's Job ending: the
// app's last step POSTs 127.0.0.1:15020/quitquitquit, as with pilot-agent,
// and the proxy drains and exits. GET is refused, and so is a caller from
// outside the pod (the status port listens on every address).
func TestQuitOnStatusPortEndsTheProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxyDone := make(chan error, 1)
	go func() {
		cmd := rootCommand()
		cmd.SetArgs([]string{"--xds-address", freeAddr(t), "--type", "sidecar", "--ip", "127.0.0.1",
			"--pod-name", "report-x7k2p", "--namespace", "batch", "--labels", "app=report",
			"--admin-address", freeAddr(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "0.0.0.0:" + port,
			"--rebind", "0.0.0.0:15001=" + freeAddr(t) + ",0.0.0.0:15006=" + freeAddr(t), "--drain-duration", "200ms"})
		proxyDone <- cmd.ExecuteContext(ctx)
	}()
	quit := "http://127.0.0.1:" + port + "/quitquitquit"
	do := func(c *http.Client, method, url string) int {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for do(c, "GET", "http://127.0.0.1:"+port+"/healthz/ready") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the status port never answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := do(c, "GET", quit); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit: got %d, want 405", code)
	}
	if ip := nonLoopbackIP(); ip != "" {
		// Dial the status port from (and to) an address outside loopback.
		outside := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		if code := do(outside, "POST", "http://"+net.JoinHostPort(ip, port)+"/quitquitquit"); code != http.StatusForbidden {
			t.Errorf("POST /quitquitquit from %s: got %d, want 403", ip, code)
		}
	} else {
		t.Log("no non-loopback address on this machine: the outside caller is not checked")
	}
	select {
	case err := <-proxyDone:
		t.Fatalf("the proxy exited before it was told to: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if code := do(c, "POST", quit); code != http.StatusOK {
		t.Fatalf("POST /quitquitquit: got %d, want 200", code)
	}
	select {
	case err := <-proxyDone:
		if err != nil {
			t.Errorf("proxy: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the proxy did not exit after /quitquitquit")
	}
}

// nonLoopbackIP returns an IPv4 address of this machine outside loopback,
// or "".
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !strings.HasPrefix(n.IP.String(), "169.254.") {
			return n.IP.String()
		}
	}
	return ""
}
