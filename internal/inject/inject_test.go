package inject

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestKubeInjectGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	if len(ins) == 0 {
		t.Fatal("no testdata/*.in.yaml")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Manifests(DefaultConfig(), src)
			if err != nil {
				t.Fatalf("kube-inject: %v", err)
			}
			path := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				os.WriteFile(path, got, 0o644)
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs (run go test ./internal/inject -update and review); got:\n%s", path, got)
			}
			// Injecting the output again changes nothing.
			again, err := Manifests(DefaultConfig(), got)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(got) {
				t.Errorf("kube-inject is not idempotent on %s", name)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	cfg := DefaultConfig()
	byDefault := cfg
	byDefault.EnableNamespacesByDefault = true
	policyOff := cfg
	policyOff.Policy = "disabled"
	enabled := map[string]string{"istio-injection": "enabled"}
	pod := func(labels, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann}}
	}
	cases := []struct {
		name   string
		cfg    Config
		pod    *corev1.Pod
		ns     string
		labels map[string]string
		want   bool
	}{
		{"labelled namespace", cfg, pod(nil, nil), "demo", enabled, true},
		{"unlabelled namespace", cfg, pod(nil, nil), "demo", nil, false},
		{"pod opts out by label", cfg, pod(map[string]string{"sidecar.istio.io/inject": "false"}, nil), "demo", enabled, false},
		{"pod opts out by annotation", cfg, pod(nil, map[string]string{"sidecar.istio.io/inject": "false"}), "demo", enabled, false},
		{"pod opts in", cfg, pod(map[string]string{"sidecar.istio.io/inject": "true"}, nil), "demo", nil, true},
		{"namespace disabled beats pod", cfg, pod(map[string]string{"sidecar.istio.io/inject": "true"}, nil), "demo", map[string]string{"istio-injection": "disabled"}, false},
		{"kube-system never", cfg, pod(nil, nil), "kube-system", enabled, false},
		{"enabled by default", byDefault, pod(nil, nil), "demo", nil, true},
		{"policy disabled needs opt-in", policyOff, pod(nil, nil), "demo", enabled, false},
		{"policy disabled with opt-in", policyOff, pod(map[string]string{"sidecar.istio.io/inject": "true"}, nil), "demo", enabled, true},
		{"already injected", cfg, pod(nil, map[string]string{AnnotationStatus: "{}"}), "demo", enabled, false},
		{"host network", cfg, &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true}}, "demo", enabled, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(c.cfg, c.pod, c.ns, c.labels); got.Inject != c.want {
				t.Errorf("got inject=%v (%s), want %v", got.Inject, got.Reason, c.want)
			}
		})
	}
}

func TestPodRejectsBadAnnotations(t *testing.T) {
	cases := []struct {
		name, key, value, want string
	}{
		{"cidr", AnnIncludeIPRanges, "10.0.0.0/40", `metadata.annotations[traffic.sidecar.istio.io/includeOutboundIPRanges]: "10.0.0.0/40" is not a CIDR`},
		{"port", AnnExcludeInbound, "http", `metadata.annotations[traffic.sidecar.istio.io/excludeInboundPorts]: "http" is not a port`},
		{"quantity", AnnProxyCPU, "fast", `metadata.annotations[sidecar.istio.io/proxyCPU]: got "fast", want a Kubernetes quantity`},
		{"bool", AnnotationRewrite, "sure", `metadata.annotations[sidecar.istio.io/rewriteAppHTTPProbers]: got "sure", want true or false`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{c.key: c.value}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
			_, err := Pod(DefaultConfig(), p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func FuzzManifests(f *testing.F) {
	for _, s := range []string{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: a\n", "kind: Deployment\nspec: {}\n", "---\n---\n", "kind: List\nitems: [1]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Manifests(DefaultConfig(), in)
		if err != nil {
			return
		}
		if _, err := Manifests(DefaultConfig(), out); err != nil {
			t.Errorf("output does not re-read: %v\ninput:\n%s\noutput:\n%s", err, in, out)
		}
	})
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, body, want string
	}{
		{"partial json keeps defaults", `{"proxyImage":"x/proxy:1","policy":"disabled"}`, ""},
		{"unknown field", `{"proxyImage":"x","policy":"enabled","bogus":1}`, "bogus"},
		{"bad policy", `{"proxyImage":"x","policy":"maybe"}`, `policy: got "maybe"`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i)))
			os.WriteFile(p, []byte(c.body), 0o644)
			cfg, err := LoadConfig(p)
			if c.want == "" {
				if err != nil || cfg.ProxyImage != "x/proxy:1" || cfg.Policy != "disabled" || cfg.IncludeIPRanges != "*" {
					t.Errorf("got %+v, %v", cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}
