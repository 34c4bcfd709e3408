package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKubeInjectCommand(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n"
	cfg := filepath.Join(t.TempDir(), "inject.json")
	os.WriteFile(cfg, []byte(`{"proxyImage":"my/proxy:9","policy":"enabled","includeIPRanges":"10.0.0.0/8"}`), 0o644)
	cases := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"stdin with --set", []string{"kube-inject", "-f", "-", "--set", "values.global.proxy.excludeIPRanges=169.254.169.254/32"}, []string{"name: istio-proxy", "name: istio-init", "169.254.169.254/32"}, ""},
		{"cluster config file", []string{"kube-inject", "-f", "-", "--injectConfigFile", cfg}, []string{"image: my/proxy:9", "10.0.0.0/8"}, ""},
		{"native on 1.32 by default", []string{"kube-inject", "-f", "-"}, []string{"restartPolicy: Always", "startupProbe:"}, ""},
		{"fallback on 1.28", []string{"kube-inject", "-f", "-", "--kube-version", "1.28"}, []string{"postStart:", "- wait"}, ""},
		{"fallback forced", []string{"kube-inject", "-f", "-", "--native-sidecars=false"}, []string{"postStart:", "- wait"}, ""},
		{"bad version", []string{"kube-inject", "-f", "-", "--kube-version", "latest"}, nil, `--kube-version: "latest": want MAJOR.MINOR`},
		{"bad native value", []string{"kube-inject", "-f", "-", "--native-sidecars", "maybe"}, nil, `--native-sidecars: got "maybe"`},
		{"no input", []string{"kube-inject"}, nil, "--filename: required"},
		{"bad setting", []string{"kube-inject", "-f", "-", "--set", "values.global.proxy.nope=1"}, nil, "values.global.proxy.nope: unknown setting"},
		{"both config sources", []string{"kube-inject", "-f", "-", "--injectConfigFile", cfg, "--set", "profile=demo"}, nil, "not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runCLI(t, pod, c.args...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestProfileAndManifestCommands(t *testing.T) {
	out, err := runCLI(t, "", "profile", "list")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Trellis configuration profiles:\n    default\n    demo\n    empty\n    minimal\n    remote\n"; out != want {
		t.Errorf("profile list: got %q, want %q", out, want)
	}
	out, err = runCLI(t, "", "profile", "dump", "demo")
	if err != nil || !strings.Contains(out, "profile: demo") || !strings.Contains(out, "accessLogFile: /dev/stdout") {
		t.Errorf("profile dump demo: got %v\n%s", err, out)
	}
	golden, err := os.ReadFile("../install/testdata/manifest-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "", "manifest", "generate", "--set", "profile=demo")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(golden) {
		t.Errorf("manifest generate --set profile=demo differs from internal/install/testdata/manifest-demo.yaml")
	}
	if _, err := runCLI(t, "", "version", "--remote=false"); err != nil {
		t.Errorf("version --remote=false: %v", err)
	}
}
