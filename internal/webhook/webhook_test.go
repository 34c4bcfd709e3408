package webhook_test

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"

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
	// The API server's own /version through discovery, which the test can
	// replace by an older answer; asked on every review.
	versions := &versionSource{}
	versions.use(c.Kube.Discovery())
	inj.ServerVersion, inj.VersionTTL = versions, time.Nanosecond
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
		if p.Annotations[inject.AnnotationStatus] != "" || time.Now().After(deadline) {
			got = p
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Kubernetes 1.32: the proxy is a native sidecar, after istio-init.
	if form := sidecarForm(got); form != "native" {
		t.Fatalf("pod in labelled namespace on %s: got %s form (init %v, containers %v), want native", kubetest.KubeVersion, form, names(got.Spec.InitContainers), names(got.Spec.Containers))
	}
	args := strings.Join(got.Spec.InitContainers[0].Args, " ")
	if !strings.Contains(args, "-x 169.254.169.254/32") || !strings.HasPrefix(args, "iptables -p 15001 -z 15006 -u 1337") {
		t.Errorf("istio-init args: got %q, want iptables with the pod's exclude annotation", args)
	}
	if uid := got.Spec.InitContainers[1].SecurityContext.RunAsUser; uid == nil || *uid != 1337 {
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
	if plain.Annotations[inject.AnnotationStatus] != "" {
		t.Errorf("pod in unlabelled namespace: got containers %v, want app only", names(plain.Spec.Containers))
	}
	optOut, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, newPod("opt-out", map[string]string{"sidecar.istio.io/inject": "false"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if optOut.Annotations[inject.AnnotationStatus] != "" {
		t.Errorf("opted-out pod: got containers %v, want app only", names(optOut.Spec.Containers))
	}
	optIn, err := c.Kube.CoreV1().Pods("wh-plain").Create(ctx, newPod("opt-in", map[string]string{"sidecar.istio.io/inject": "true"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sidecarForm(optIn) != "native" {
		t.Errorf("opted-in pod in unlabelled namespace: got containers %v, want app + istio-proxy", names(optIn.Spec.Containers))
	}

	// Discovery says the API server is older than 1.29: the fallback.
	versions.use(fixedVersion{Major: "1", Minor: "28", GitVersion: "v1.28.15"})
	old, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, newPod("on-old-server", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if form := sidecarForm(old); form != "fallback" {
		t.Errorf("pod when discovery says v1.28.15: got %s form (init %v, containers %v), want fallback", form, names(old.Spec.InitContainers), names(old.Spec.Containers))
	}
	// A pod asking for a native sidecar there is refused with the fix.
	askNative := newPod("asks-native", nil)
	askNative.Annotations[inject.AnnNativeSidecar] = "true"
	_, err = c.Kube.CoreV1().Pods("wh-injected").Create(ctx, askNative, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "metadata.annotations[sidecar.istio.io/nativeSidecar]: Kubernetes v1.28.15 does not run native sidecars") {
		t.Errorf("nativeSidecar=true on v1.28: got %v, want a refusal naming the annotation", err)
	}

	// The same 1.32 server with the feature turned off in the injector's
	// values (values.pilot.env.ENABLE_NATIVE_SIDECARS=false): the fallback.
	versions.use(c.Kube.Discovery())
	off := inject.DefaultConfig()
	off.NativeSidecars = "false"
	inj.SetConfig(off)
	forcedOff, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, newPod("native-off", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if form := sidecarForm(forcedOff); form != "fallback" {
		t.Errorf("pod with nativeSidecars=false on %s: got %s form, want fallback", kubetest.KubeVersion, form)
	}
	// And a pod's annotation turns it back on.
	askNative.Name = "asks-native-again"
	back, err := c.Kube.CoreV1().Pods("wh-injected").Create(ctx, askNative, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if form := sidecarForm(back); form != "native" {
		t.Errorf("pod annotated nativeSidecar=true with nativeSidecars=false: got %s form, want native", form)
	}
	inj.SetConfig(inject.DefaultConfig())
	// A bad proxy.istio.io/config is refused by the API server with the path.
	badCfg := newPod("bad-proxy-config", nil)
	badCfg.Annotations[inject.AnnProxyConfig] = "terminationDrainDuration: -3s"
	_, err = c.Kube.CoreV1().Pods("wh-injected").Create(ctx, badCfg, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "metadata.annotations[proxy.istio.io/config].terminationDrainDuration") {
		t.Errorf("bad proxy.istio.io/config: got %v, want a refusal naming the field", err)
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

	// A valid STRICT PeerAuthentication and an allow-nothing
	// AuthorizationPolicy are accepted (both are enforced); a
	// RequestAuthentication bound by targetRef is refused, as Trellis does
	// not apply it: a user must not believe a policy is on when it is not.
	pa := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
		"metadata": map[string]any{"name": "default", "namespace": "wh-plain"},
		"spec":     map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
	}}
	par := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
	if _, err = c.Dynamic.Resource(par).Namespace("wh-plain").Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Errorf("STRICT PeerAuthentication refused: %v", err)
	}
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": "allow-nothing", "namespace": "wh-plain"},
		"spec":     map[string]any{},
	}}
	apr := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	if _, err = c.Dynamic.Resource(apr).Namespace("wh-plain").Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Errorf("allow-nothing AuthorizationPolicy refused: %v", err)
	}
	ra := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
		"metadata": map[string]any{"name": "jwt", "namespace": "wh-plain"},
		"spec": map[string]any{"targetRef": map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
			"jwtRules": []any{map[string]any{"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks"}}},
	}}
	rar := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "requestauthentications"}
	_, err = c.Dynamic.Resource(rar).Namespace("wh-plain").Create(ctx, ra, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "RequestAuthentication wh-plain/jwt: not enforced yet") || !strings.Contains(err.Error(), "validation.trellis.io") {
		t.Errorf("RequestAuthentication: got error %v, want a refusal saying RequestAuthentication wh-plain/jwt is not enforced yet", err)
	}
}

// sidecarForm tells how the proxy was injected into p: "native" (init
// containers istio-init then istio-proxy with restartPolicy: Always and a
// startup probe on 15021), "fallback" (istio-proxy the first container,
// held by its postStart `trellis-proxy wait`), or what was found.
func sidecarForm(p *corev1.Pod) string {
	inits, cs := p.Spec.InitContainers, p.Spec.Containers
	if len(inits) >= 2 && inits[0].Name == inject.InitContainerName && inits[1].Name == inject.ProxyContainerName {
		px := inits[1]
		if px.RestartPolicy == nil || *px.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			return "istio-proxy init container without restartPolicy: Always"
		}
		if px.StartupProbe == nil || px.StartupProbe.HTTPGet == nil || px.StartupProbe.HTTPGet.Port.IntValue() != inject.HealthPort {
			return "native sidecar without the startup probe on 15021"
		}
		for _, c := range cs {
			if c.Name == inject.ProxyContainerName {
				return "istio-proxy twice"
			}
		}
		return "native"
	}
	if len(cs) >= 2 && cs[0].Name == inject.ProxyContainerName && len(inits) >= 1 && inits[len(inits)-1].Name == inject.InitContainerName {
		l := cs[0].Lifecycle
		if l == nil || l.PostStart == nil || l.PostStart.Exec == nil || strings.Join(l.PostStart.Exec.Command, " ") != "trellis-proxy wait" {
			return "istio-proxy first without the postStart wait"
		}
		return "fallback"
	}
	return "none"
}

// versionSource answers /version from whichever source the test chose.
type versionSource struct {
	mu  sync.Mutex
	src discovery.ServerVersionInterface
}

func (v *versionSource) use(src discovery.ServerVersionInterface) {
	v.mu.Lock()
	v.src = src
	v.mu.Unlock()
}

func (v *versionSource) ServerVersion() (*version.Info, error) {
	v.mu.Lock()
	src := v.src
	v.mu.Unlock()
	return src.ServerVersion()
}

// fixedVersion is an API server that says it is older.
type fixedVersion version.Info

func (f fixedVersion) ServerVersion() (*version.Info, error) {
	i := version.Info(f)
	return &i, nil
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
