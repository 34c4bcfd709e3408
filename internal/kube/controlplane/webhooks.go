package controlplane

import (
	"bytes"
	"context"
	"fmt"

	admv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// secretCerts returns the webhook certificate from its Secret, creating
// the Secret when it is missing.
func secretCerts(ctx context.Context, c *kube.Clients, ns string) (*webhook.Certs, error) {
	if _, err := install.EnsureWebhookSecret(ctx, c, ns); err != nil {
		return nil, err
	}
	sec, err := c.Kube.CoreV1().Secrets(ns).Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read secret %s/%s: %w", ns, install.WebhookSecret, err)
	}
	certs := &webhook.Certs{CA: sec.Data[webhook.KeyCA], Cert: sec.Data[webhook.KeyCert], Key: sec.Data[webhook.KeyKey]}
	if _, err := certs.TLSConfig(); err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, install.WebhookSecret, err)
	}
	return certs, nil
}

// trustWebhooks writes ca into the webhook configurations' caBundle where
// it differs and, now that the webhooks are served, makes validation
// failures block writes (failurePolicy Fail), as istiod does. Missing
// configurations (installs without webhooks) are fine.
func trustWebhooks(ctx context.Context, c *kube.Clients, ca []byte) error {
	mw := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	m, err := mw.Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	default:
		changed := false
		for i := range m.Webhooks {
			if !bytes.Equal(m.Webhooks[i].ClientConfig.CABundle, ca) {
				m.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if changed {
			if _, err := mw.Update(ctx, m, metav1.UpdateOptions{FieldManager: "trellisd"}); err != nil {
				return fmt.Errorf("update %s: %w", install.InjectorWebhookName, err)
			}
		}
	}
	vw := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	v, err := vw.Get(ctx, install.ValidatorWebhookName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	fail := admv1.Fail
	changed := false
	for i := range v.Webhooks {
		if !bytes.Equal(v.Webhooks[i].ClientConfig.CABundle, ca) {
			v.Webhooks[i].ClientConfig.CABundle = ca
			changed = true
		}
		if v.Webhooks[i].FailurePolicy == nil || *v.Webhooks[i].FailurePolicy != fail {
			v.Webhooks[i].FailurePolicy = &fail
			changed = true
		}
	}
	if changed {
		if _, err := vw.Update(ctx, v, metav1.UpdateOptions{FieldManager: "trellisd"}); err != nil {
			return fmt.Errorf("update %s: %w", install.ValidatorWebhookName, err)
		}
	}
	return nil
}

// trustRemoteWebhook writes ca into a remote cluster's injection webhook
// (installed by the remote profile, calling this trellisd's URL) where it
// differs, so that cluster's API server trusts what this trellisd serves
// with. A remote cluster without that webhook is left alone.
func trustRemoteWebhook(ctx context.Context, client kubernetes.Interface, ca []byte) error {
	mw := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	m, err := mw.Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	changed := false
	for i := range m.Webhooks {
		if m.Webhooks[i].ClientConfig.URL != nil && !bytes.Equal(m.Webhooks[i].ClientConfig.CABundle, ca) {
			m.Webhooks[i].ClientConfig.CABundle = ca
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := mw.Update(ctx, m, metav1.UpdateOptions{FieldManager: "trellisd"}); err != nil {
		return fmt.Errorf("update %s: %w", install.InjectorWebhookName, err)
	}
	return nil
}
