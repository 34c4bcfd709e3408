package ca

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Istio's per-namespace ConfigMap holding the trust bundle; the injector
// mounts it at /var/run/secrets/istio/root-cert.pem.
const (
	RootConfigMap    = "istio-ca-root-cert"
	RootConfigMapKey = "root-cert.pem"
)

// PublishRoots keeps the istio-ca-root-cert ConfigMap with rootsPEM in
// every namespace, as istiod does, until ctx ends: existing namespaces at
// once, new ones as they appear, and a ConfigMap edited or deleted by
// someone else is put back. logf reports failures.
func PublishRoots(ctx context.Context, c kubernetes.Interface, rootsPEM []byte, logf func(format string, args ...any)) error {
	fac := informers.NewSharedInformerFactory(c, 0)
	nsInf := fac.Core().V1().Namespaces().Informer()
	cmFac := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + RootConfigMap
	}))
	cmInf := cmFac.Core().V1().ConfigMaps().Informer()
	ensure := func(ns string) {
		if err := ensureRoot(ctx, c, ns, rootsPEM); err != nil && ctx.Err() == nil {
			logf("ca: publish %s in namespace %s: %v", RootConfigMap, ns, err)
		}
	}
	onNS := func(obj any) {
		if n, ok := obj.(*corev1.Namespace); ok && n.Status.Phase != corev1.NamespaceTerminating {
			ensure(n.Name)
		}
	}
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onNS}); err != nil {
		return err
	}
	onCM := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Data[RootConfigMapKey] != string(rootsPEM) {
			ensure(cm.Namespace)
		}
	}
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { onCM(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				ensure(cm.Namespace)
			}
		},
	}); err != nil {
		return err
	}
	fac.Start(ctx.Done())
	cmFac.Start(ctx.Done())
	for typ, ok := range fac.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v", typ)
		}
	}
	<-ctx.Done()
	fac.Shutdown()
	cmFac.Shutdown()
	return nil
}

func ensureRoot(ctx context.Context, c kubernetes.Interface, ns string, rootsPEM []byte) error {
	cms := c.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, RootConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: RootConfigMap, Labels: map[string]string{"istio.io/config": "true"}},
			Data:       map[string]string{RootConfigMapKey: string(rootsPEM)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // raced with another trellisd; its content is checked on the update event
		}
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data[RootConfigMapKey] == string(rootsPEM) {
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[RootConfigMapKey] = string(rootsPEM)
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}
