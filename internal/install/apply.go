package install

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// FieldManager is the server-side apply field manager of every install.
const FieldManager = "trellis-installer"

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Out receives progress lines ("✔ Control plane installed"); nil
	// discards them.
	Out io.Writer
	// Wait waits for Deployments to become available and says what it is
	// waiting for; Timeout bounds the wait (zero means 5 minutes).
	Wait    bool
	Timeout time.Duration
	// Poll is the readiness poll interval; zero means one second.
	Poll time.Duration
}

// Apply server-side applies the components in order. It is idempotent:
// applying the same settings again changes nothing. The CRDs are waited
// for (Established) before anything else; the webhook certificate Secret
// is created once and its CA is written into the webhook configurations.
func Apply(ctx context.Context, c *kube.Clients, comps []Component, o ApplyOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
	for _, comp := range comps {
		if err := prepareWebhooks(ctx, c, comp); err != nil {
			return fmt.Errorf("%s: %w", comp.Name, err)
		}
		for _, obj := range comp.Objects {
			if err := applyOne(ctx, c, mapper, obj); err != nil {
				return fmt.Errorf("%s: %w", comp.Name, err)
			}
		}
		if err := waitCRDs(ctx, c, comp, o.Timeout); err != nil {
			return fmt.Errorf("%s: %w", comp.Name, err)
		}
		mapper.Reset()
		if o.Wait {
			if err := waitDeployments(ctx, c, comp, o, out); err != nil {
				return fmt.Errorf("%s: %w", comp.Name, err)
			}
		}
		fmt.Fprintf(out, "✔ %s installed\n", comp.Name)
	}
	if err := prune(ctx, c, comps, out); err != nil {
		return err
	}
	fmt.Fprintln(out, "✔ Installation complete")
	return nil
}

// prune deletes objects an earlier install created that the current
// settings no longer render (demo -> default removes the egress gateway).
// CRDs and namespaces are never pruned (that would delete users' Istio
// objects), nor the webhook certificate Secret.
func prune(ctx context.Context, c *kube.Clients, comps []Component, out io.Writer) error {
	keep := map[string]bool{}
	for _, o := range Objects(comps) {
		keep[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy}
	bg := metav1.DeletePropagationBackground
	for _, r := range purgeKinds {
		if r.Resource == "customresourcedefinitions" || r.Resource == "namespaces" {
			continue
		}
		list, err := c.Dynamic.Resource(r).List(ctx, sel)
		if err != nil {
			return fmt.Errorf("prune: list %s: %w", r.Resource, err)
		}
		for _, item := range list.Items {
			if keep[item.GetKind()+"/"+item.GetNamespace()+"/"+item.GetName()] || item.GetDeletionTimestamp() != nil ||
				(item.GetKind() == "Secret" && item.GetName() == WebhookSecret) {
				continue
			}
			ri := c.Dynamic.Resource(r)
			var err error
			if item.GetNamespace() != "" {
				err = ri.Namespace(item.GetNamespace()).Delete(ctx, item.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg})
			} else {
				err = ri.Delete(ctx, item.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("prune %s %s: %w", item.GetKind(), qualified(&item), err)
			}
			fmt.Fprintf(out, "  removed %s %s (not in these settings)\n", item.GetKind(), qualified(&item))
		}
	}
	return nil
}

func gvr(mapper apimeta.RESTMapper, obj *unstructured.Unstructured) (schema.GroupVersionResource, bool, error) {
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%s %s: no such resource in the cluster: %w", obj.GetKind(), obj.GetName(), err)
	}
	return m.Resource, m.Scope.Name() == apimeta.RESTScopeNameNamespace, nil
}

func applyOne(ctx context.Context, c *kube.Clients, mapper apimeta.RESTMapper, obj *unstructured.Unstructured) error {
	res, namespaced, err := gvr(mapper, obj)
	if err != nil {
		return err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	if namespaced {
		_, err = c.Dynamic.Resource(res).Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	} else {
		_, err = c.Dynamic.Resource(res).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	}
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.GetKind(), qualified(obj), err)
	}
	return nil
}

func qualified(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

// prepareWebhooks makes sure the webhook certificate Secret exists (it is
// generated once and kept across re-installs) and writes its CA into the
// component's webhook configurations as caBundle.
func prepareWebhooks(ctx context.Context, c *kube.Clients, comp Component) error {
	var hooks []*unstructured.Unstructured
	ns := ""
	for _, o := range comp.Objects {
		switch o.GetKind() {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			hooks = append(hooks, o)
		case "Deployment":
			if o.GetName() == ControlPlaneName {
				ns = o.GetNamespace()
			}
		}
	}
	if len(hooks) == 0 || ns == "" {
		return nil
	}
	ca, err := EnsureWebhookSecret(ctx, c, ns)
	if err != nil {
		return err
	}
	bundle := base64.StdEncoding.EncodeToString(ca)
	for _, h := range hooks {
		list, _, _ := unstructured.NestedSlice(h.Object, "webhooks")
		for _, w := range list {
			wm := w.(map[string]any)
			cc, _ := wm["clientConfig"].(map[string]any)
			if cc != nil {
				cc["caBundle"] = bundle
			}
		}
		if err := unstructured.SetNestedSlice(h.Object, list, "webhooks"); err != nil {
			return err
		}
	}
	return nil
}

// EnsureWebhookSecret returns the CA of the webhook certificate Secret in
// ns, creating the Secret (CA + serving certificate for trellisd.NS.svc)
// when it is missing. trellisd mounts it and serves with it.
func EnsureWebhookSecret(ctx context.Context, c *kube.Clients, ns string) ([]byte, error) {
	sec, err := c.Kube.CoreV1().Secrets(ns).Get(ctx, WebhookSecret, metav1.GetOptions{})
	if err == nil && len(sec.Data[webhook.KeyCA]) > 0 {
		return sec.Data[webhook.KeyCA], nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read secret %s/%s: %w", ns, WebhookSecret, err)
	}
	certs, err := webhook.GenerateCerts(webhook.ServiceDNSNames(ControlPlaneName, ns), []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: WebhookSecret, Namespace: ns, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelComponent: "pilot"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{webhook.KeyCA: certs.CA, webhook.KeyCert: certs.Cert, webhook.KeyKey: certs.Key},
	}
	if _, err := c.Kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return EnsureWebhookSecret(ctx, c, ns)
		}
		return nil, fmt.Errorf("create secret %s/%s: %w", ns, WebhookSecret, err)
	}
	return certs.CA, nil
}

func waitCRDs(ctx context.Context, c *kube.Clients, comp Component, timeout time.Duration) error {
	var names []string
	for _, o := range comp.Objects {
		if o.GetKind() == "CustomResourceDefinition" {
			names = append(names, o.GetName())
		}
	}
	deadline := time.Now().Add(timeout)
	for _, n := range names {
		for {
			crd, err := c.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
			if err == nil && crdEstablished(crd.Status.Conditions) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CustomResourceDefinition %s not established after %s", n, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func waitDeployments(ctx context.Context, c *kube.Clients, comp Component, o ApplyOptions, out io.Writer) error {
	var deps []*unstructured.Unstructured
	for _, obj := range comp.Objects {
		if obj.GetKind() == "Deployment" {
			deps = append(deps, obj)
		}
	}
	deadline := time.Now().Add(o.Timeout)
	last := map[string]string{}
	for {
		var waiting []string
		for _, d := range deps {
			got, err := c.Kube.AppsV1().Deployments(d.GetNamespace()).Get(ctx, d.GetName(), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read Deployment %s: %w", qualified(d), err)
			}
			want := int32(1)
			if got.Spec.Replicas != nil {
				want = *got.Spec.Replicas
			}
			if got.Status.ObservedGeneration >= got.Generation && got.Status.AvailableReplicas >= want {
				continue
			}
			msg := fmt.Sprintf("Deployment %s: %d/%d replicas available", qualified(d), got.Status.AvailableReplicas, want)
			waiting = append(waiting, msg)
			if last[d.GetName()] != msg {
				fmt.Fprintf(out, "  waiting for %s\n", msg)
				last[d.GetName()] = msg
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(waiting)
			return fmt.Errorf("not ready after %s: %s (check `kubectl get pods -n %s` and the pods' events)", o.Timeout, strings.Join(waiting, "; "), deps[0].GetNamespace())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.Poll):
		}
	}
}

// UninstallOptions tune Uninstall.
type UninstallOptions struct {
	Out io.Writer
	// Purge removes everything labelled app.kubernetes.io/managed-by=trellis,
	// including the CRDs (and with them every Istio object in the cluster).
	Purge bool
}

// purgeKinds are the kinds an install creates, for --purge.
var purgeKinds = []schema.GroupVersionResource{
	{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "configmaps"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	{Version: "v1", Resource: "namespaces"},
}

// Uninstall deletes the rendered objects in reverse order (keeping the
// CRDs unless Purge), and with Purge everything labelled as installed by
// Trellis. Objects already gone are fine.
func Uninstall(ctx context.Context, c *kube.Clients, comps []Component, o UninstallOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
	objs := Objects(comps)
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	removed := 0
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		if obj.GetKind() == "CustomResourceDefinition" && !o.Purge {
			continue
		}
		res, namespaced, err := gvr(mapper, obj)
		if err != nil {
			continue // the kind is not served: nothing of it to delete
		}
		if namespaced {
			err = c.Dynamic.Resource(res).Namespace(obj.GetNamespace()).Delete(ctx, obj.GetName(), del)
		} else {
			err = c.Dynamic.Resource(res).Delete(ctx, obj.GetName(), del)
		}
		switch {
		case err == nil:
			removed++
			fmt.Fprintf(out, "  removed %s %s\n", obj.GetKind(), qualified(obj))
		case !apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("delete %s %s: %w", obj.GetKind(), qualified(obj), err))
		}
	}
	if o.Purge {
		sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy}
		for _, r := range purgeKinds {
			list, err := c.Dynamic.Resource(r).List(ctx, sel)
			if err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				errs = append(errs, fmt.Errorf("list %s: %w", r.Resource, err))
				continue
			}
			for _, item := range list.Items {
				if item.GetDeletionTimestamp() != nil {
					continue
				}
				var err error
				if item.GetNamespace() != "" {
					err = c.Dynamic.Resource(r).Namespace(item.GetNamespace()).Delete(ctx, item.GetName(), del)
				} else {
					err = c.Dynamic.Resource(r).Delete(ctx, item.GetName(), del)
				}
				switch {
				case err == nil:
					removed++
					fmt.Fprintf(out, "  removed %s %s\n", item.GetKind(), qualified(&item))
				case !apierrors.IsNotFound(err):
					errs = append(errs, fmt.Errorf("delete %s %s: %w", item.GetKind(), qualified(&item), err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintf(out, "✔ Uninstall complete (%d objects removed)\n", removed)
	return nil
}
