package controlplane

import (
	"bytes"
	"context"
	"os"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// TestWireWithoutMountedCerts is the `manifest generate | kubectl apply`
// path: no certificate Secret and no caBundle until trellisd starts.
func TestWireWithoutMountedCerts(t *testing.T) {
	env := kubetest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Clients
	s, err := install.Load(install.Options{Set: []string{"profile=minimal"}})
	if err != nil {
		t.Fatal(err)
	}
	comps, _ := install.Render(s)
	if err := install.Apply(ctx, c, comps, install.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Undo what install adds beyond the manifests.
	if err := c.Kube.CoreV1().Secrets("trellis-system").Delete(ctx, install.WebhookSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	v, _ := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, install.ValidatorWebhookName, metav1.GetOptions{})
	for i := range v.Webhooks {
		v.Webhooks[i].ClientConfig.CABundle = nil
	}
	if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var o trellisd.Options
	w, err := Wire(ctx, Options{Clients: c, WebhookCertDir: t.TempDir(), WebhookAddress: "127.0.0.1:0"}, &o)
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	if w.WebhookAddr == nil || len(o.Registries) != 2 || o.Store == nil {
		t.Fatalf("wired: got webhook %v, %d registries, store %v", w.WebhookAddr, len(o.Registries), o.Store)
	}
	sec, err := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("webhook secret not created: %v", err)
	}
	v, _ = c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, install.ValidatorWebhookName, metav1.GetOptions{})
	for _, h := range v.Webhooks {
		if !bytes.Equal(h.ClientConfig.CABundle, sec.Data["ca.crt"]) {
			t.Errorf("validator %s: caBundle not the secret's CA", h.Name)
		}
		if h.FailurePolicy == nil || *h.FailurePolicy != admv1.Fail {
			t.Errorf("validator %s: got failurePolicy %v, want Fail once trellisd serves", h.Name, h.FailurePolicy)
		}
	}
	m, _ := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
	for _, h := range m.Webhooks {
		if !bytes.Equal(h.ClientConfig.CABundle, sec.Data["ca.crt"]) {
			t.Errorf("injector %s: caBundle not the secret's CA", h.Name)
		}
	}
}
