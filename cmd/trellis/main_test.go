package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test binary doubles as trellis when TRELLIS_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("TRELLIS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// `trellis analyze` on a RequestAuthentication bound by targetRef (not enforced yet)
// exits non-zero and says so, naming it; a STRICT PeerAuthentication and
// an allow-nothing AuthorizationPolicy (both enforced) are clean.
func TestAnalyzeFailsOnUnenforcedSecurity(t *testing.T) {
	dir := t.TempDir()
	ap := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec: {targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}, jwtRules: [{issuer: https://issuer.example.com, jwksUri: https://issuer.example.com/jwks}]}\n"
	if err := os.WriteFile(filepath.Join(dir, "ap.yaml"), []byte(ap), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() (string, int) {
		cmd := exec.Command(os.Args[0], "analyze", "-f", dir)
		cmd.Env = append(os.Environ(), "TRELLIS_MAIN=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run()
	if code == 0 {
		t.Errorf("exit status: got 0, want non-zero; output:\n%s", out)
	}
	if !strings.Contains(out, "Error (RequestAuthentication istio-system/jwt") || !strings.Contains(out, "not enforced yet") {
		t.Errorf("output: got\n%s\nwant an Error naming RequestAuthentication istio-system/jwt as not enforced yet", out)
	}
	os.Remove(filepath.Join(dir, "ap.yaml"))
	pa := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
	os.WriteFile(filepath.Join(dir, "pa.yaml"), []byte(pa), 0o644)
	os.WriteFile(filepath.Join(dir, "authz.yaml"), []byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: istio-system}\nspec: {}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "se.yaml"), []byte("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: default}\nspec: {hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n"), 0o644)
	if out, code := run(); code != 0 {
		t.Errorf("clean directory: exit %d, want 0; output:\n%s", code, out)
	}
}
