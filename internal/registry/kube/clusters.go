package kube

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
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
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// MultiClusterLabel marks Secrets that join remote clusters: each data key
// is a cluster name, its value that cluster's kubeconfig (Istio's
// remote-secret format).
const MultiClusterLabel = "istio/multiCluster"

// Clusters is a registry.Source over the remote clusters named by
// Secrets labelled istio/multiCluster=true in one namespace. Each remote
// cluster gets its own Registry (endpoints carry its name as Cluster); the
// snapshot merges them. Secrets added, changed or deleted start, restart or
// stop the remote registries.
type Clusters struct {
	local     kubernetes.Interface
	namespace string
	opts      Options
	// Connect turns a kubeconfig into a client; nil uses client-go.
	Connect func(kubeconfig []byte) (kubernetes.Interface, error)
	// OnJoin, when set, is called (in its own goroutine) each time a
	// cluster is joined, with its client: trellisd writes its webhook CA
	// into the remote cluster's injection webhook.
	OnJoin func(ctx context.Context, name string, client kubernetes.Interface)

	fac informers.SharedInformerFactory
	inf cache.SharedIndexInformer

	mu      sync.Mutex
	remotes map[string]*remote // cluster name -> running registry
	errs    map[string]string  // cluster name -> why it is not running
	subs    []func()
	snap    atomic.Pointer[registry.Snapshot]
	kick    chan struct{}
}

type remote struct {
	hash   [32]byte
	client kubernetes.Interface
	reg    *Registry
	cancel context.CancelFunc
}

// clusterSecret is the stripped Secret: only its kubeconfigs.
type clusterSecret struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Kubeconfigs map[string][]byte
}

func (s *clusterSecret) DeepCopyObject() runtime.Object { c := *s; return &c }

// NewClusters watches namespace of the local cluster for remote-cluster
// Secrets; opts apply to every remote registry (ClusterID is set per
// cluster).
func NewClusters(local kubernetes.Interface, namespace string, opts Options) *Clusters {
	c := &Clusters{local: local, namespace: namespace, opts: opts,
		remotes: map[string]*remote{}, errs: map[string]string{}, kick: make(chan struct{}, 1)}
	c.snap.Store(registry.NewSnapshot(nil, nil))
	c.fac = informers.NewSharedInformerFactoryWithOptions(local, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = MultiClusterLabel + "=true" }),
		informers.WithTransform(func(obj any) (any, error) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return obj, nil
			}
			return &clusterSecret{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion}, Kubeconfigs: s.Data}, nil
		}))
	c.inf = c.fac.Core().V1().Secrets().Informer()
	kick := func() {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	_, _ = c.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) { kick() }, UpdateFunc: func(any, any) { kick() }, DeleteFunc: func(any) { kick() }})
	return c
}

// Start watches the Secrets, connects the clusters they name (waiting for
// the first ones to sync) and keeps reconciling until ctx ends.
func (c *Clusters) Start(ctx context.Context) error {
	c.fac.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.inf.HasSynced) {
		return fmt.Errorf("remote cluster secrets: informer did not sync: %w", ctx.Err())
	}
	c.reconcile(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				c.mu.Lock()
				for _, r := range c.remotes {
					r.cancel()
				}
				c.mu.Unlock()
				return
			case <-c.kick:
				c.reconcile(ctx)
			}
		}
	}()
	return nil
}

// Snapshot merges the remote clusters' snapshots.
func (c *Clusters) Snapshot() *registry.Snapshot { return c.snap.Load() }

// Subscribe registers fn to be called after any remote cluster changes.
func (c *Clusters) Subscribe(fn func()) {
	c.mu.Lock()
	c.subs = append(c.subs, fn)
	c.mu.Unlock()
}

// Status lists the joined clusters and, for the others, why not.
func (c *Clusters) Status() (joined []string, failed map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.remotes {
		joined = append(joined, k)
	}
	sort.Strings(joined)
	failed = map[string]string{}
	for k, v := range c.errs {
		failed[k] = v
	}
	return joined, failed
}

// Client is the client of the joined cluster name (built from its remote
// secret's kubeconfig: the CA reviews that cluster's tokens with it), or
// an error saying why there is none: no remote secret names the cluster,
// or its secret's cluster could not be joined.
func (c *Clusters) Client(name string) (kubernetes.Interface, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.remotes[name]; ok {
		return r.client, nil
	}
	if msg, ok := c.errs[name]; ok {
		return nil, fmt.Errorf("its remote secret is in %s but the cluster is not joined: %s", c.namespace, msg)
	}
	joined := make([]string, 0, len(c.remotes))
	for k := range c.remotes {
		joined = append(joined, k)
	}
	sort.Strings(joined)
	return nil, fmt.Errorf("no remote secret (label %s=true in %s) names it (joined: %s); apply its secret from `trellis create-remote-secret --name %s`",
		MultiClusterLabel, c.namespace, strings.Join(joinedOrNone(joined), ", "), name)
}

// NamespaceLabels is the labels of namespace ns in the joined cluster
// (the injector's view of a remote cluster's pods).
func (c *Clusters) NamespaceLabels(ctx context.Context, cluster, ns string) (map[string]string, error) {
	c.mu.Lock()
	r, ok := c.remotes[cluster]
	c.mu.Unlock()
	if !ok {
		_, err := c.Client(cluster)
		return nil, fmt.Errorf("cluster %q: %w", cluster, err)
	}
	return r.reg.NamespaceLabels(ctx, ns)
}

func joinedOrNone(l []string) []string {
	if len(l) == 0 {
		return []string{"none"}
	}
	return l
}

func (c *Clusters) connect(kubeconfig []byte) (kubernetes.Interface, error) {
	if c.Connect != nil {
		return c.Connect(kubeconfig)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return kubernetes.NewForConfig(cfg)
}

// reconcile makes the running registries match the Secrets.
func (c *Clusters) reconcile(ctx context.Context) {
	want := map[string][]byte{}
	for _, o := range c.inf.GetStore().List() {
		s, ok := o.(*clusterSecret)
		if !ok {
			continue
		}
		for name, kc := range s.Kubeconfigs {
			want[name] = kc
		}
	}
	changed := false
	c.mu.Lock()
	for name, r := range c.remotes {
		if kc, ok := want[name]; !ok || sha256.Sum256(kc) != r.hash {
			r.cancel()
			delete(c.remotes, name)
			changed = true
		}
	}
	for name := range c.errs {
		if _, ok := want[name]; !ok {
			delete(c.errs, name)
		}
	}
	var start []string
	for name := range want {
		if _, ok := c.remotes[name]; !ok {
			start = append(start, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(start)
	for _, name := range start {
		kc := want[name]
		err := c.join(ctx, name, kc)
		c.mu.Lock()
		if err != nil {
			c.errs[name] = err.Error()
		} else {
			delete(c.errs, name)
			changed = true
		}
		c.mu.Unlock()
	}
	if changed {
		c.rebuild()
	}
}

func (c *Clusters) join(ctx context.Context, name string, kubeconfig []byte) error {
	client, err := c.connect(kubeconfig)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", name, err)
	}
	opts := c.opts
	opts.ClusterID = name
	reg := New(client, opts)
	rctx, cancel := context.WithCancel(ctx)
	// The informers run until rctx ends; only the first sync is bounded.
	errc := make(chan error, 1)
	go func() { errc <- reg.Start(rctx) }()
	select {
	case err := <-errc:
		if err != nil {
			cancel()
			return fmt.Errorf("cluster %s: %w", name, err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		return fmt.Errorf("cluster %s: not synced after 30s (is its API server reachable?)", name)
	}
	reg.Subscribe(c.rebuild)
	c.mu.Lock()
	c.remotes[name] = &remote{hash: sha256.Sum256(kubeconfig), client: client, reg: reg, cancel: cancel}
	c.mu.Unlock()
	if c.OnJoin != nil {
		go c.OnJoin(rctx, name, client)
	}
	return nil
}

func (c *Clusters) rebuild() {
	c.mu.Lock()
	names := make([]string, 0, len(c.remotes))
	for k := range c.remotes {
		names = append(names, k)
	}
	sort.Strings(names)
	snaps := make([]*registry.Snapshot, 0, len(names))
	for _, k := range names {
		snaps = append(snaps, c.remotes[k].reg.Snapshot())
	}
	subs := append([]func(){}, c.subs...)
	c.mu.Unlock()
	c.snap.Store(registry.Merge(snaps...))
	for _, fn := range subs {
		fn()
	}
}
