package local

import (
	"os"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/inject"
)

// injectedYAML injects pod in the given form and renders it as YAML.
func injectedYAML(t *testing.T, native bool, pod *corev1.Pod) string {
	t.Helper()
	out, err := inject.Pod(inject.DefaultConfig(), inject.Target{NativeSidecars: native}, pod)
	if err != nil {
		t.Fatal(err)
	}
	out.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func reportPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "batch", Labels: map[string]string{"app": "report"},
			Annotations: map[string]string{inject.AnnProxyConfig: "terminationDrainDuration: 3s"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "report", Image: "example/report:1", Command: []string{"report", "--once"},
			Env: []corev1.EnvVar{{Name: "MODE", Value: "full"}}}}},
	}
}

func TestFromPodNativeSidecar(t *testing.T) {
	svc := `apiVersion: v1
kind: Service
metadata: {name: report, namespace: batch}
spec:
  selector: {app: report}
  ports: [{name: http-web, port: 8080, targetPort: 80}, {name: db, port: 5432, targetPort: 5432, appProtocol: tcp}]
---
`
	spec, err := FromPod(strings.NewReader(svc + injectedYAML(t, true, reportPod())))
	if err != nil {
		t.Fatal(err)
	}
	wantSvc := []Service{{Name: "report", Namespace: "batch", Selector: map[string]string{"app": "report"}, Ports: []ServicePort{
		{Name: "http-web", Port: 8080, TargetPort: 80, Protocol: "HTTP"}, {Name: "db", Port: 5432, TargetPort: 5432, Protocol: "TCP"}}}}
	if !reflect.DeepEqual(spec.Services, wantSvc) {
		t.Errorf("services: got %+v, want %+v", spec.Services, wantSvc)
	}
	if len(spec.Workloads) != 1 {
		t.Fatalf("workloads: got %d, want 1", len(spec.Workloads))
	}
	w := spec.Workloads[0]
	if w.Name != "report" || w.Namespace != "batch" || w.Labels["app"] != "report" ||
		!reflect.DeepEqual(w.Command, []string{"report", "--once"}) || !reflect.DeepEqual(w.Env, []string{"MODE=full"}) {
		t.Errorf("workload: got %+v", w)
	}
	s := w.Pod
	if s == nil {
		t.Fatal("no pod steps")
	}
	if !s.RunToCompletion || s.StartupProbe != "http://127.0.0.1:15021/healthz/ready" || s.PostStart != nil {
		t.Errorf("steps: got completion %v, startup probe %q, postStart %q; want a Job's native sidecar gated on 15021", s.RunToCompletion, s.StartupProbe, s.PostStart)
	}
	if got := strings.Join(s.ProxyArgs, " "); !strings.Contains(got, "--drain-duration 3s") {
		t.Errorf("proxy args %q: want the pod's --drain-duration 3s", got)
	}
	if got := strings.Join(s.Iptables, " "); !strings.HasPrefix(got, "-p 15001 -z 15006 -u 1337") {
		t.Errorf("iptables flags: got %q", got)
	}
	for _, e := range s.ProxyEnv {
		if strings.HasPrefix(e, "POD_NAME=") || strings.HasPrefix(e, "INSTANCE_IP=") {
			t.Errorf("proxy env %q: the downward API fields are the runner's", e)
		}
	}
	// The spec round-trips through the file `trellis local up -f` reads.
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/workloads.yaml"
	os.WriteFile(path, b, 0o644)
	back, err := LoadSpec(path)
	if err != nil {
		t.Fatalf("load the written spec: %v", err)
	}
	if !reflect.DeepEqual(back.Workloads[0].Pod, s) {
		t.Errorf("round trip: got %+v, want %+v", back.Workloads[0].Pod, s)
	}
}

func TestFromPodFallbackHoldsOnPostStart(t *testing.T) {
	pod := reportPod()
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	spec, err := FromPod(strings.NewReader(injectedYAML(t, false, pod)))
	if err != nil {
		t.Fatal(err)
	}
	s := spec.Workloads[0].Pod
	if s.RunToCompletion || s.StartupProbe != "" || !reflect.DeepEqual(s.PostStart, []string{"trellis-proxy", "wait"}) {
		t.Errorf("fallback steps: got completion %v, startup probe %q, postStart %q; want the postStart wait", s.RunToCompletion, s.StartupProbe, s.PostStart)
	}
	if got := podCommand("/opt/bin/trellis-proxy", s.PostStart); !reflect.DeepEqual(got, []string{"/opt/bin/trellis-proxy", "wait"}) {
		t.Errorf("postStart locally: got %q", got)
	}
}

func TestFromPodRejects(t *testing.T) {
	plain := `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: web, image: x, command: [web]}]
`
	extraInit := reportPod()
	extraInit.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: "x", Command: []string{"fetch"}}}
	noCommand := reportPod()
	noCommand.Spec.Containers[0].Command = nil
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not injected", plain, "document 0 (Pod).spec: no istio-proxy container: inject the pod first"},
		{"other init container", injectedYAML(t, true, extraInit), `spec.initContainers[2]: only the injected istio-init and istio-proxy run locally; remove "fetch"`},
		{"image entrypoint", injectedYAML(t, true, noCommand), "spec.containers[0].command: required locally"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromPod(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
