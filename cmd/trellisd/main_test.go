package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as trellisd when TRELLISD_MAIN is set, so the
// tests below run the real program as a separate process.
func TestMain(m *testing.M) {
	if os.Getenv("TRELLISD_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func trellisdCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TRELLISD_MAIN=1")
	return cmd
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	se := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
`
	if err := os.WriteFile(dir+"/web.yaml", []byte(se), 0o644); err != nil {
		t.Fatal(err)
	}
	debug := freeAddr(t)
	var stderr bytes.Buffer
	cmd := trellisdCmd("--config-dir", dir, "--xds-address", "127.0.0.1:0", "--debug-address", debug, "--metrics-address", "", "--ca-address", "")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + debug + "/debug/registryz")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if !strings.Contains(b.String(), "web.default.svc.cluster.local") {
				t.Fatalf("registryz: got %s, want the web service", b.String())
			}
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("trellisd never served %s: %v; stderr:\n%s", debug, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: got %v, want 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("trellisd did not stop on SIGTERM")
	}
}

func TestBadFlagsExitNonZero(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"traffic policy", []string{"--outbound-traffic-policy", "SOMETIMES", "--xds-address", "127.0.0.1:0", "--debug-address", "", "--metrics-address", "", "--ca-address", ""}, "want ALLOW_ANY or REGISTRY_ONLY"},
		{"missing config dir", []string{"--config-dir", "/nonexistent/trellis", "--xds-address", "127.0.0.1:0", "--debug-address", "", "--metrics-address", "", "--ca-address", ""}, "--config-dir"},
		{"ca ttl above max", []string{"--ca-address", "127.0.0.1:0", "--workload-cert-ttl", "48h", "--xds-address", "127.0.0.1:0", "--debug-address", "", "--metrics-address", ""}, "--workload-cert-ttl"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := trellisdCmd(tc.args...).CombinedOutput()
			if err == nil {
				t.Fatalf("got exit 0, want non-zero; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output: got %q, want it to contain %q", out, tc.want)
			}
		})
	}
}
