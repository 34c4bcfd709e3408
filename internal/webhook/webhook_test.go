package webhook_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// startServer runs the webhook on 127.0.0.1 with a fresh CA and returns
// its base URL and the CA.
func startServer(t *testing.T, ctx context.Context, s *webhook.Server) (string, []byte) {
	t.Helper()
	certs, err := webhook.GenerateCerts([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := certs.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l, tlsCfg) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + l.Addr().String(), certs.CA
}

func TestAPIServerCallsWebhooks(t *testing.T) {
	env := kubetest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := env.Clients

	// The Istio CRDs, so Istio objects can be written.
	s, err := install.Load(install.Options{Set: []string{"profile=minimal", "components.pilot.enabled=false"}})
	if err != nil {
		t.Fatal(err)
	}
	comps, _ := install.Render(s)
	if err := install.Apply(ctx, c, comps, install.ApplyOptions{}); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}

	inj := webhook.NewInjector(inject.DefaultConfig())
	inj.NamespaceLabels = func(ctx context.Context, ns string) (map[string]string, error) {
		n, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return n.Labels, nil
	}
	base, ca := startServer(t, ctx, &webhook.Server{Inject: inj, Validate: true})
	t.Cleanup(cancel)

	// Webhook configurations as install renders them, pointed at the
	// test's server by URL.
	objs := install.Objects(mustRender(t, "profile=minimal"))
	var mwh admv1.MutatingWebhookConfiguration
	var vwh admv1.ValidatingWebhookConfiguration
	for _, o := range objs {
		switch o.GetKind() {
		case "MutatingWebhookConfiguration":
			fromUnstructured(t, o, &mwh)
		case "ValidatingWebhookConfiguration":
			fromUnstructured(t, o, &vwh)
		}
	}
	fail := admv1.Fail
	for i := range mwh.Webhooks {
		u := base + "/inject"
		mwh.Webhooks[i].ClientConfig = admv1.WebhookClientConfig{URL: &u, CABundle: ca}
	}
	for i := range vwh.Webhooks {
		u := base + "/validate"
		vwh.Webhooks[i].ClientConfig = admv1.WebhookClientConfig{URL: &u, CABundle: ca}
		vwh.Webhooks[i].FailurePolicy = &fail
	}
	mwh.Name, vwh.Name = "test-injector", "test-validator"
	if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &mwh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &vwh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(bg, mwh.Name, metav1.DeleteOptions{})
		c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(bg, vwh.Name, metav1.DeleteOptions{})
	})

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "wh-injected", Labels: map[string]string{"istio-injection": "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "wh-plain"}},
	} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The API server applies webhook configuration changes asynchronously:
	// retry the first pod until it comes back injected.
	newPod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{"traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "nginx",
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			}}},
		}
	}
	var got *corev1.Pod
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		p, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, newPod("front-"+string(rune('a'+i)), map[string]string{"app": "front"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod: %v", err)
		}
		if len(p.Spec.Containers) == 2 || time.Now().After(deadline) {
			got = p
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(got.Spec.Containers) != 2 || got.Spec.Containers[1].Name != inject.ProxyContainerName {
		t.Fatalf("pod in labelled namespace: got containers %v, want app + istio-proxy", names(got.Spec.Containers))
	}
	if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != inject.InitContainerName {
		t.Fatalf("init containers: got %v, want istio-init", names(got.Spec.InitContainers))
	}
	args := strings.Join(got.Spec.InitContainers[0].Args, " ")
	if !strings.Contains(args, "-x 169.254.169.254/32") || !strings.HasPrefix(args, "iptables -p 15001 -z 15006 -u 1337") {
		t.Errorf("istio-init args: got %q, want iptables with the pod's exclude annotation", args)
	}
	if uid := got.Spec.Containers[1].SecurityContext.RunAsUser; uid == nil || *uid != 1337 {
		t.Errorf("proxy uid: got %v, want 1337", uid)
	}
	if p := got.Spec.Containers[0].ReadinessProbe.HTTPGet; p.Path != "/app-health/app/readyz" || p.Port.IntValue() != 15020 {
		t.Errorf("rewritten probe: got %s:%s, want /app-health/app/readyz:15020", p.Path, p.Port.String())
	}
	if got.Annotations[inject.AnnotationStatus] == "" {
		t.Errorf("status annotation missing")
	}

	// Not labelled: not injected. Opted out: not injected.
	plain, err := c.Kube.CoreV1().Pods("wh-plain").Create(ctx, newPod("plain", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Spec.Containers) != 1 {
		t.Errorf("pod in unlabelled namespace: got containers %v, want app only", names(plain.Spec.Containers))
	}
	optOut, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, newPod("opt-out", map[string]string{"sidecar.istio.io/inject": "false"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(optOut.Spec.Containers) != 1 {
		t.Errorf("opted-out pod: got containers %v, want app only", names(optOut.Spec.Containers))
	}
	optIn, err := c.Kube.CoreV1().Pods("wh-plain").Create(ctx, newPod("opt-in", map[string]string{"sidecar.istio.io/inject": "true"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(optIn.Spec.Containers) != 2 {
		t.Errorf("opted-in pod in unlabelled namespace: got containers %v, want app + istio-proxy", names(optIn.Spec.Containers))
	}

	// An invalid VirtualService is refused by the API server with the field error.
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
		"metadata": map[string]any{"name": "vs-bad", "namespace": "wh-plain"},
		"spec": map[string]any{"hosts": []any{"bill-service"}, "http": []any{map[string]any{
			"route": []any{map[string]any{"destination": map[string]any{"host": "bill-service"}, "weight": -5}}}}},
	}}
	vsr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	_, err = c.Dynamic.Resource(vsr).Namespace("wh-plain").Create(ctx, vs, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.http[0].route[0].weight") || !strings.Contains(err.Error(), "validation.trellis.io") {
		t.Errorf("invalid VirtualService: got error %v, want a refusal naming spec.http[0].route[0].weight", err)
	}
	// And a valid one is accepted.
	unstructured.SetNestedSlice(vs.Object, []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "bill-service"}}}}}, "spec", "http")
	if _, err := c.Dynamic.Resource(vsr).Namespace("wh-plain").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Errorf("valid VirtualService refused: %v", err)
	}

	// A valid STRICT PeerAuthentication is refused while Trellis does not
	// enforce it: a user must not believe mTLS is on when it is not.
	pa := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
		"metadata": map[string]any{"name": "default", "namespace": "wh-plain"},
		"spec":     map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
	}}
	par := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	_, err = c.Dynamic.Resource(par).Namespace("wh-plain").Create(ctx, pa, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "PeerAuthentication wh-plain/default: not enforced yet") || !strings.Contains(err.Error(), "validation.trellis.io") {
		t.Errorf("STRICT PeerAuthentication: got error %v, want a refusal saying PeerAuthentication wh-plain/default is not enforced yet", err)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func mustRender(t *testing.T, set ...string) []install.Component {
	t.Helper()
	s, err := install.Load(install.Options{Set: set})
	if err != nil {
		t.Fatal(err)
	}
	comps, err := install.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	return comps
}
