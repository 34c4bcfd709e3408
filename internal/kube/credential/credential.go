package credential

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// CASuffix names the companion Secret that holds a MUTUAL server's CA when
// the main Secret has none (Istio's "NAME-cacert").
const CASuffix = "-cacert"

// Extract reads TLS material from a Secret's data the way Istio does:
// tls.crt/tls.key/ca.crt (kubernetes.io/tls) or cert/key/cacert (generic).
// ok is false when the Secret holds neither a key pair nor a CA.
func Extract(data map[string][]byte) (c translate.Credential, ok bool) {
	pick := func(keys ...string) []byte {
		for _, k := range keys {
			if v := data[k]; len(v) > 0 {
				return v
			}
		}
		return nil
	}
	c.CertChain = pick("tls.crt", "cert")
	c.PrivateKey = pick("tls.key", "key")
	c.CACert = pick("ca.crt", "cacert")
	if (c.CertChain == nil) != (c.PrivateKey == nil) {
		return c, false
	}
	return c, c.CertChain != nil || c.CACert != nil
}

// secret is the stripped form kept in the informer store.
type secret struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	cred *translate.Credential // nil for Secrets without TLS material
}

func (s *secret) DeepCopyObject() runtime.Object { c := *s; return &c }

func transform(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion}}
	// Service account tokens and the like never hold gateway certificates.
	if s.Type == corev1.SecretTypeServiceAccountToken || s.Type == corev1.SecretTypeDockerConfigJson || s.Type == corev1.SecretTypeDockercfg {
		return out, nil
	}
	if c, ok := Extract(s.Data); ok {
		out.cred = &c
	}
	return out, nil
}

// Watcher keeps the TLS Secrets of the cluster.
type Watcher struct {
	inf   cache.SharedIndexInformer
	fac   informers.SharedInformerFactory
	creds atomic.Pointer[map[string]*translate.Credential]
	dirty chan struct{}
	mu    sync.Mutex
	subs  []func()
}

// New returns a watcher of Secrets in namespace ("" for all).
func New(client kubernetes.Interface, namespace string) *Watcher {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace), informers.WithTransform(transform))
	w := &Watcher{fac: f, inf: f.Core().V1().Secrets().Informer(), dirty: make(chan struct{}, 1)}
	empty := map[string]*translate.Credential{}
	w.creds.Store(&empty)
	mark := func() {
		select {
		case w.dirty <- struct{}{}:
		default:
		}
	}
	_, _ = w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { mark() }, UpdateFunc: func(any, any) { mark() }, DeleteFunc: func(any) { mark() },
	})
	return w
}

// Start runs the informer until ctx ends and waits for its first sync.
func (w *Watcher) Start(ctx context.Context) error {
	w.fac.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.inf.HasSynced) {
		return fmt.Errorf("secret informer did not sync: %w", ctx.Err())
	}
	w.rebuild()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.dirty:
			}
			time.Sleep(20 * time.Millisecond) // gather a burst
			w.rebuild()
			w.mu.Lock()
			subs := append([]func(){}, w.subs...)
			w.mu.Unlock()
			for _, fn := range subs {
				fn()
			}
		}
	}()
	return nil
}

// Subscribe registers fn to be called after the credentials change.
func (w *Watcher) Subscribe(fn func()) {
	w.mu.Lock()
	w.subs = append(w.subs, fn)
	w.mu.Unlock()
}

// Credentials returns the TLS Secrets keyed "namespace/name", a MUTUAL
// server's CA merged in from "NAME-cacert" when the Secret has none. The
// map and its values must not be altered.
func (w *Watcher) Credentials() map[string]*translate.Credential { return *w.creds.Load() }

func (w *Watcher) rebuild() {
	out := map[string]*translate.Credential{}
	for _, o := range w.inf.GetStore().List() {
		s, ok := o.(*secret)
		if !ok || s.cred == nil {
			continue
		}
		c := *s.cred
		out[s.Namespace+"/"+s.Name] = &c
	}
	for k, c := range out {
		if strings.HasSuffix(k, CASuffix) || c.CACert != nil {
			continue
		}
		if ca := out[k+CASuffix]; ca != nil && ca.CACert != nil {
			c.CACert = ca.CACert
		}
	}
	w.creds.Store(&out)
}
