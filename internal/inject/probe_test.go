package inject

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Every container's probes go through the agent port, so they keep
// working under STRICT mTLS: HTTP, TCP and gRPC, liveness, readiness and
// startup, of each app container and of the pod's own native sidecars; the
// originals reach the proxy in ISTIO_KUBE_APP_PROBERS.
func TestRewriteCoversEveryContainersProbes(t *testing.T) {
	httpProbe := func(path string, port intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port}}}
	}
	tcpProbe := func(port intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
	}
	grpcProbe := func(port int32, service *string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port, Service: service}}, TimeoutSeconds: 4}
	}
	stock := "shop.Stock"
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "logship", RestartPolicy: &always, LivenessProbe: tcpProbe(intstr.FromInt32(24224)), StartupProbe: grpcProbe(24225, nil)}},
			Containers: []corev1.Container{
				{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					LivenessProbe: httpProbe("/live", intstr.FromString("http")), ReadinessProbe: httpProbe("/ready", intstr.FromInt32(8080)), StartupProbe: tcpProbe(intstr.FromString("http"))},
				{Name: "db", ReadinessProbe: tcpProbe(intstr.FromInt32(5432))},
				{Name: "stock", LivenessProbe: grpcProbe(9090, &stock), ReadinessProbe: grpcProbe(9090, nil)},
			},
		},
	}
	target, _ := ParseKubeVersion("1.32")
	out, err := Pod(DefaultConfig(), target, pod)
	if err != nil {
		t.Fatal(err)
	}
	var proxy *corev1.Container
	probes := map[string]*corev1.Probe{}
	for i := range out.Spec.InitContainers {
		c := &out.Spec.InitContainers[i]
		if c.Name == ProxyContainerName {
			proxy = c
		}
		if c.Name == "logship" {
			probes["logship/livez"] = c.LivenessProbe
			probes["logship/startupz"] = c.StartupProbe
		}
	}
	for _, c := range out.Spec.Containers {
		for kind, p := range map[string]*corev1.Probe{"livez": c.LivenessProbe, "readyz": c.ReadinessProbe, "startupz": c.StartupProbe} {
			if p != nil {
				probes[c.Name+"/"+kind] = p
			}
		}
	}
	want := map[string]string{
		"web/livez": `{"httpGet":{"path":"/live","port":8080},"timeoutSeconds":0}`, "web/readyz": `{"httpGet":{"path":"/ready","port":8080}}`,
		"web/startupz": `{"tcpSocket":{"port":8080}}`, "db/readyz": `{"tcpSocket":{"port":5432}}`, "logship/livez": `{"tcpSocket":{"port":24224}}`,
		"logship/startupz": `{"grpc":{"port":24225,"service":null},"timeoutSeconds":4}`,
		"stock/livez":      `{"grpc":{"port":9090,"service":"shop.Stock"},"timeoutSeconds":4}`,
		"stock/readyz":     `{"grpc":{"port":9090,"service":null},"timeoutSeconds":4}`,
	}
	if len(probes) != len(want) {
		t.Fatalf("got probes %v, want %d", probes, len(want))
	}
	for key, p := range probes {
		if p.HTTPGet == nil || p.TCPSocket != nil || p.GRPC != nil || p.HTTPGet.Port.IntValue() != AgentPort || p.HTTPGet.Path != "/app-health/"+key {
			t.Errorf("%s: got %+v, want GET :%d/app-health/%s", key, p.ProbeHandler, AgentPort, key)
		}
	}
	var env string
	for _, e := range proxy.Env {
		if e.Name == EnvAppProbers {
			env = e.Value
		}
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(env), &got); err != nil {
		t.Fatalf("%s: %v in %q", EnvAppProbers, err, env)
	}
	for key, w := range want {
		var a, b map[string]any
		json.Unmarshal(got["/app-health/"+key], &a)
		json.Unmarshal([]byte(w), &b)
		if _, isGRPC := b["grpc"]; isGRPC {
			// gRPC originals are kept whole, service and timeout included.
			if string(got["/app-health/"+key]) != w {
				t.Errorf("%s original: got %s, want %s", key, got["/app-health/"+key], w)
			}
			continue
		}
		ah, bh := a["httpGet"], b["httpGet"]
		at, bt := a["tcpSocket"], b["tcpSocket"]
		if (ah == nil) != (bh == nil) || (at == nil) != (bt == nil) {
			t.Errorf("%s original: got %s, want %s", key, got["/app-health/"+key], w)
			continue
		}
		if bt != nil && at.(map[string]any)["port"] != bt.(map[string]any)["port"] {
			t.Errorf("%s original port: got %s, want %s", key, got["/app-health/"+key], w)
		}
		if bh != nil && (ah.(map[string]any)["port"] != bh.(map[string]any)["port"] || ah.(map[string]any)["path"] != bh.(map[string]any)["path"]) {
			t.Errorf("%s original: got %s, want %s", key, got["/app-health/"+key], w)
		}
	}
}
