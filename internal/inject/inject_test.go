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

// The two forms every golden input is rendered in: Kubernetes 1.32 runs
// native sidecars, 1.28 gets the fallback.
var goldenForms = []struct{ name, version string }{{"native", "1.32"}, {"fallback", "1.28"}}

func TestKubeInjectGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	if len(ins) == 0 {
		t.Fatal("no testdata/*.in.yaml")
	}
	for _, in := range ins {
		for _, form := range goldenForms {
			name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
			t.Run(name+"/"+form.name, func(t *testing.T) {
				target, err := ParseKubeVersion(form.version)
				if err != nil {
					t.Fatal(err)
				}
				src, err := os.ReadFile(in)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Manifests(DefaultConfig(), target, src)
				if err != nil {
					t.Fatalf("kube-inject: %v", err)
				}
				path := filepath.Join("testdata", name+"."+form.name+".golden.yaml")
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
				again, err := Manifests(DefaultConfig(), target, got)
				if err != nil {
					t.Fatal(err)
				}
				if string(again) != string(got) {
					t.Errorf("kube-inject is not idempotent on %s", name)
				}
			})
		}
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
	current := Target{NativeSidecars: true, Server: "Kubernetes v1.32.13"}
	old := Target{NativeSidecars: false, Server: "Kubernetes v1.28.3"}
	cases := []struct {
		name, key, value, want string
		target                 Target
	}{
		{"cidr", AnnIncludeIPRanges, "10.0.0.0/40", `metadata.annotations[traffic.sidecar.istio.io/includeOutboundIPRanges]: "10.0.0.0/40" is not a CIDR`, current},
		{"port", AnnExcludeInbound, "http", `metadata.annotations[traffic.sidecar.istio.io/excludeInboundPorts]: "http" is not a port`, current},
		{"cpu", AnnProxyCPU, "fast", `metadata.annotations[sidecar.istio.io/proxyCPU]: got "fast", want a Kubernetes quantity`, current},
		{"memory", AnnProxyMemory, "lots", `metadata.annotations[sidecar.istio.io/proxyMemory]: got "lots", want a Kubernetes quantity`, current},
		{"cpu limit", AnnProxyCPULimit, "1 core", `metadata.annotations[sidecar.istio.io/proxyCPULimit]: got "1 core", want a Kubernetes quantity`, current},
		{"memory limit", AnnProxyMemLimit, "-1Gi", `metadata.annotations[sidecar.istio.io/proxyMemoryLimit]: got "-1Gi", want a Kubernetes quantity`, current},
		{"bool", AnnotationRewrite, "sure", `metadata.annotations[sidecar.istio.io/rewriteAppHTTPProbers]: got "sure", want true or false`, current},
		{"native not a bool", AnnNativeSidecar, "yes please", `metadata.annotations[sidecar.istio.io/nativeSidecar]: got "yes please", want "true" or "false"`, current},
		{"native on an old server", AnnNativeSidecar, "true", `metadata.annotations[sidecar.istio.io/nativeSidecar]: Kubernetes v1.28.3 does not run native sidecars (Kubernetes 1.29 or later does); remove the annotation or set it to "false"`, old},
		{"proxy config not yaml", AnnProxyConfig, "holdApplicationUntilProxyStarts: [", `metadata.annotations[proxy.istio.io/config]: not YAML`, current},
		{"proxy config unknown field", AnnProxyConfig, "holdApplicationUntilProxyStart: true", `metadata.annotations[proxy.istio.io/config]: not a ProxyConfig`, current},
		{"proxy config wrong type", AnnProxyConfig, "holdApplicationUntilProxyStarts: sometimes", `metadata.annotations[proxy.istio.io/config]: not a ProxyConfig`, current},
		{"proxy config bad duration", AnnProxyConfig, "terminationDrainDuration: 500ms", `metadata.annotations[proxy.istio.io/config]: not a ProxyConfig`, current},
		{"proxy config negative duration", AnnProxyConfig, "terminationDrainDuration: -5s", `metadata.annotations[proxy.istio.io/config].terminationDrainDuration: got`, current},
		{"proxy config unsupported field", AnnProxyConfig, "tracing:\n  sampling: 10\n", `metadata.annotations[proxy.istio.io/config].tracing: not supported per pod by Trellis`, current},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{c.key: c.value}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
			_, err := Pod(DefaultConfig(), c.target, p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestPodLifecycleForms checks how the annotations, the injector's values
// and the cluster's version pick where the proxy goes.
func TestPodLifecycleForms(t *testing.T) {
	current, _ := ParseKubeVersion("v1.32.13")
	old, _ := ParseKubeVersion("1.28")
	noNative := DefaultConfig()
	noNative.NativeSidecars = "false"
	noHold := DefaultConfig()
	noHold.HoldApplicationUntilProxyStarts = false
	cases := []struct {
		name   string
		cfg    Config
		target Target
		ann    map[string]string
		// want: "native" (init container after istio-init), "hold" (first
		// container with the wait hook) or "last" (after the app).
		want, drain string
	}{
		{"1.32 is native", DefaultConfig(), current, nil, "native", "5s"},
		{"1.28 holds", DefaultConfig(), old, nil, "hold", "5s"},
		{"injector value off", noNative, current, nil, "hold", "5s"},
		{"annotation off", DefaultConfig(), current, map[string]string{AnnNativeSidecar: "false"}, "hold", "5s"},
		{"annotation on beats the injector value", noNative, current, map[string]string{AnnNativeSidecar: "true"}, "native", "5s"},
		{"hold off by value", noHold, old, nil, "last", "5s"},
		{"hold off by proxy config", DefaultConfig(), old, map[string]string{AnnProxyConfig: "holdApplicationUntilProxyStarts: false"}, "last", "5s"},
		{"hold on by proxy config", noHold, old, map[string]string{AnnProxyConfig: "holdApplicationUntilProxyStarts: true"}, "hold", "5s"},
		{"drain by proxy config", DefaultConfig(), current, map[string]string{AnnProxyConfig: "terminationDrainDuration: 45s\nconcurrency: 4"}, "native", "45s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: c.ann},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "migrate"}},
					Containers:     []corev1.Container{{Name: "app"}},
				}}
			out, err := Pod(c.cfg, c.target, p)
			if err != nil {
				t.Fatal(err)
			}
			inits, apps := names(out.Spec.InitContainers), names(out.Spec.Containers)
			var got string
			var proxy corev1.Container
			switch {
			case strings.Join(inits, ",") == "istio-init,istio-proxy,migrate" && strings.Join(apps, ",") == "app":
				got, proxy = "native", out.Spec.InitContainers[1]
				if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Errorf("native proxy restartPolicy: got %v, want Always", proxy.RestartPolicy)
				}
				if sp := proxy.StartupProbe; sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/healthz/ready" || sp.HTTPGet.Port.IntValue() != HealthPort {
					t.Errorf("native proxy startup probe: got %+v, want GET :15021/healthz/ready", sp)
				}
			case strings.Join(inits, ",") == "migrate,istio-init" && strings.Join(apps, ",") == "istio-proxy,app":
				got, proxy = "hold", out.Spec.Containers[0]
				if l := proxy.Lifecycle; l == nil || l.PostStart == nil || l.PostStart.Exec == nil || strings.Join(l.PostStart.Exec.Command, " ") != "trellis-proxy wait" {
					t.Errorf("held proxy postStart: got %+v, want exec trellis-proxy wait", l)
				}
			case strings.Join(inits, ",") == "migrate,istio-init" && strings.Join(apps, ",") == "app,istio-proxy":
				got, proxy = "last", out.Spec.Containers[1]
				if proxy.Lifecycle != nil {
					t.Errorf("unheld proxy lifecycle: got %+v, want none", proxy.Lifecycle)
				}
			default:
				t.Fatalf("got init containers %v and containers %v, which is no known form", inits, apps)
			}
			if got != c.want {
				t.Errorf("got form %s, want %s", got, c.want)
			}
			args := strings.Join(proxy.Args, " ")
			if !strings.Contains(args, "--drain-duration "+c.drain) {
				t.Errorf("proxy args %q lack --drain-duration %s", args, c.drain)
			}
		})
	}
}

func TestParseKubeVersion(t *testing.T) {
	cases := []struct {
		in     string
		native bool
		err    bool
	}{
		{"1.32", true, false}, {"v1.29.0", true, false}, {"1.28", false, false}, {"1.29+", true, false},
		{"v1.27.16-gke.1", false, false}, {"2.0", true, false}, {"1", false, true}, {"one.two", false, true},
	}
	for _, c := range cases {
		got, err := ParseKubeVersion(c.in)
		if (err != nil) != c.err || (err == nil && got.NativeSidecars != c.native) {
			t.Errorf("ParseKubeVersion(%q): got %+v, %v; want native=%v, error=%v", c.in, got, err, c.native, c.err)
		}
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func FuzzManifests(f *testing.F) {
	for _, s := range []string{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: a\n", "kind: Deployment\nspec: {}\n", "---\n---\n", "kind: List\nitems: [1]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Manifests(DefaultConfig(), Target{NativeSidecars: true}, in)
		if err != nil {
			return
		}
		if _, err := Manifests(DefaultConfig(), Target{NativeSidecars: true}, out); err != nil {
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

// FuzzPodLifecycleAnnotations feeds arbitrary proxy.istio.io/config and
// sidecar.istio.io/nativeSidecar values: injection either refuses them
// with the annotation's path or produces exactly one proxy.
func FuzzPodLifecycleAnnotations(f *testing.F) {
	for _, s := range [][2]string{
		{"holdApplicationUntilProxyStarts: true", "true"},
		{"terminationDrainDuration: 20s\nconcurrency: 3", "false"},
		{"tracing: {}", ""}, {"[1, 2]", "TRUE"}, {"terminationDrainDuration: 99999999999s", "x"}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, proxyConfig, native string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{AnnProxyConfig: proxyConfig, AnnNativeSidecar: native}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		for _, target := range []Target{{NativeSidecars: true, Server: "Kubernetes v1.32.13"}, {Server: "Kubernetes v1.28.3"}} {
			out, err := Pod(DefaultConfig(), target, p)
			if err != nil {
				if !strings.Contains(err.Error(), "metadata.annotations[") {
					t.Errorf("error without the annotation's path: %v", err)
				}
				continue
			}
			n := 0
			for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
				if c.Name == ProxyContainerName {
					n++
				}
			}
			if n != 1 {
				t.Errorf("got %d istio-proxy containers, want 1", n)
			}
		}
	})
}
