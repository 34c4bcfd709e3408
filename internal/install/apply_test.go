package install

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// syncBuffer is a bytes.Buffer safe for the writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestApplyWaitUninstallAgainstAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	c := env.Clients
	s, err := Load(Options{Set: []string{"profile=demo"}})
	if err != nil {
		t.Fatal(err)
	}
	comps, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	if err := Apply(ctx, c, comps, ApplyOptions{Out: &out}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, want := range []string{"✔ Trellis core installed", "✔ Control plane installed", "✔ Ingress gateways installed", "✔ Egress gateways installed", "✔ Installation complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress: got %q, want a line %q", out.String(), want)
		}
	}

	// Every CRD is established and every object is present.
	for _, crd := range CRDs() {
		got, err := c.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get CRD %s: %v", crd.Name, err)
		}
		if !crdEstablished(got.Status.Conditions) {
			t.Errorf("CRD %s: not established", crd.Name)
		}
	}
	dep, err := c.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get trellisd: %v", err)
	}
	gw, err := c.Kube.CoreV1().Services("trellis-system").Get(ctx, "istio-ingressgateway", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ingress gateway service: %v", err)
	}
	if got := gw.Labels["istio"]; got != "ingressgateway" {
		t.Errorf("ingress gateway label istio: got %q, want ingressgateway", got)
	}
	mwh, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, InjectorWebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get mutating webhook: %v", err)
	}
	sec, err := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get webhook secret: %v", err)
	}
	if got, want := string(mwh.Webhooks[0].ClientConfig.CABundle), string(sec.Data["ca.crt"]); got != want || got == "" {
		t.Errorf("caBundle: got %d bytes, want the secret's CA (%d bytes)", len(got), len(want))
	}

	// No trellisd runs here, and the webhooks name its Service, which the
	// API server would try to reach: drop them before writing objects (the
	// second apply restores them).
	if err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, InjectorWebhookName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, ValidatorWebhookName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Istio YAML applies through the installed CRDs, in every version.
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
		"metadata": map[string]any{"name": "vs", "namespace": "default"},
		"spec":     map[string]any{"hosts": []any{"bill-service"}},
	}}
	if _, err := c.Dynamic.Resource(vsGVR).Namespace("default").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create VirtualService: %v", err)
	}
	for _, v := range []string{"v1beta1", "v1"} {
		r := vsGVR
		r.Version = v
		if _, err := c.Dynamic.Resource(r).Namespace("default").Get(ctx, "vs", metav1.GetOptions{}); err != nil {
			t.Errorf("get VirtualService as %s: %v", v, err)
		}
	}

	// A second apply changes nothing that exists (and restores the webhooks).
	if err := Apply(ctx, c, comps, ApplyOptions{}); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, ValidatorWebhookName, metav1.GetOptions{}); err != nil {
		t.Errorf("second apply did not restore the validating webhook: %v", err)
	}
	dep2, _ := c.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{})
	if dep2.ResourceVersion != dep.ResourceVersion {
		t.Errorf("second apply changed trellisd: resourceVersion %s -> %s", dep.ResourceVersion, dep2.ResourceVersion)
	}
	sec2, _ := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, WebhookSecret, metav1.GetOptions{})
	if sec2.ResourceVersion != sec.ResourceVersion {
		t.Errorf("second apply regenerated the webhook secret")
	}

	// With Wait, Apply says what it waits for, and finishes once the
	// Deployments report available replicas (no kubelet here: the test
	// plays the controller).
	var waitOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Apply(ctx, c, comps, ApplyOptions{Out: &waitOut, Wait: true, Timeout: time.Minute, Poll: 50 * time.Millisecond})
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(waitOut.String(), "waiting for Deployment trellis-system/trellisd: 0/1 replicas available") {
		if time.Now().After(deadline) {
			t.Fatalf("wait output: got %q, want a waiting line for trellisd", waitOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"trellisd", "istio-ingressgateway", "istio-egressgateway"} {
		markAvailable(t, ctx, env, name)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply with wait: %v", err)
	}

	// Switching to the default profile removes the egress gateway.
	def, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defComps, _ := Render(def)
	var sw bytes.Buffer
	if err := Apply(ctx, c, defComps, ApplyOptions{Out: &sw}); err != nil {
		t.Fatalf("apply default: %v", err)
	}
	if _, err := c.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "istio-egressgateway", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("egress gateway after switching to default: got %v, want not found", err)
	}
	if !strings.Contains(sw.String(), "removed Deployment trellis-system/istio-egressgateway (not in these settings)") {
		t.Errorf("switch output: got %q, want the egress gateway's removal", sw.String())
	}
	if _, err := c.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{}); err != nil {
		t.Errorf("trellisd after switching to default: %v", err)
	}

	// Plain uninstall removes the control plane but keeps the CRDs (and so
	// the users' Istio objects).
	if err := Uninstall(ctx, c, comps, UninstallOptions{}); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if _, err := c.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("trellisd after uninstall: got %v, want not found", err)
	}
	if _, err := c.Dynamic.Resource(vsGVR).Namespace("default").Get(ctx, "vs", metav1.GetOptions{}); err != nil {
		t.Errorf("VirtualService after plain uninstall: %v, want it kept with its CRD", err)
	}

	// Uninstall --purge removes everything it created.
	var un bytes.Buffer
	if err := Uninstall(ctx, c, comps, UninstallOptions{Out: &un, Purge: true}); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if !strings.Contains(un.String(), "✔ Uninstall complete") {
		t.Errorf("uninstall output: got %q", un.String())
	}
	for _, o := range Objects(comps) {
		gone(t, ctx, env, o)
	}
	if _, err := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, WebhookSecret, metav1.GetOptions{}); err == nil {
		// The namespace is terminating: without a controller-manager its
		// contents are not collected, so purge deletes them itself.
		t.Errorf("webhook secret still present after purge")
	}
}

func markAvailable(t *testing.T, ctx context.Context, env *kubetest.Env, name string) {
	t.Helper()
	d, err := env.Clients.Kube.AppsV1().Deployments("trellis-system").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	d.Status.ObservedGeneration = d.Generation
	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas = 1, 1, 1, 1
	if _, err := env.Clients.Kube.AppsV1().Deployments("trellis-system").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status of %s: %v", name, err)
	}
}

// gone checks that an object is deleted (or, for namespaces, which never
// finish terminating without a controller-manager, terminating).
func gone(t *testing.T, ctx context.Context, env *kubetest.Env, o *unstructured.Unstructured) {
	t.Helper()
	gvk := o.GroupVersionKind()
	res := map[string]string{
		"CustomResourceDefinition": "customresourcedefinitions", "Namespace": "namespaces", "ServiceAccount": "serviceaccounts",
		"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
		"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments",
		"MutatingWebhookConfiguration": "mutatingwebhookconfigurations", "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
	}[gvk.Kind]
	r := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: res}
	var got *unstructured.Unstructured
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		if o.GetNamespace() != "" {
			got, err = env.Clients.Dynamic.Resource(r).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
		} else {
			got, err = env.Clients.Dynamic.Resource(r).Get(ctx, o.GetName(), metav1.GetOptions{})
		}
		// Namespaces never finish terminating without a controller-manager;
		// a CRD finishes once the API server has removed its objects, which
		// can take a while on a loaded machine: being deleted is enough.
		terminating := err == nil && (gvk.Kind == "Namespace" || gvk.Kind == "CustomResourceDefinition") && got.GetDeletionTimestamp() != nil
		if apierrors.IsNotFound(err) || terminating {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s %s: still present after uninstall (err %v)", gvk.Kind, o.GetName(), err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
