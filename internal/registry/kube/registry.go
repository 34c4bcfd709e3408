package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// Options configure the registry.
type Options struct {
	// DomainSuffix is the cluster domain; empty means "cluster.local".
	DomainSuffix string
	// ClusterID names this cluster on every endpoint; empty means
	// "Kubernetes" (Istio's default).
	ClusterID string
	// Network is the endpoints' network when neither the pod, its
	// namespace nor SystemNamespace carries topology.istio.io/network.
	Network string
	// SystemNamespace is the control plane's namespace in this cluster;
	// its topology.istio.io/network label is the cluster's network (as
	// Istio reads it). Empty means "trellis-system".
	SystemNamespace string
	// Coalesce is how long a burst of events is gathered into one rebuild;
	// zero means 50ms.
	Coalesce time.Duration
}

// Registry is a registry.Source backed by Kubernetes informers.
type Registry struct {
	opts     Options
	factory  informers.SharedInformerFactory
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	nodes    cache.SharedIndexInformer
	nss      cache.SharedIndexInformer

	snap    atomic.Pointer[registry.Snapshot]
	dirty   chan struct{}
	mu      sync.Mutex
	subs    []func()
	synced  atomic.Bool
	builds  atomic.Int64
	started atomic.Bool

	dmu      sync.Mutex
	dirtyAll bool
	dirtySvc map[string]bool     // "ns/name" of Services to rebuild
	podSvcs  map[string][]string // pod "ns/name" -> Services it backs
	cache    map[string]*built   // only touched by rebuild
}

var _ registry.Source = (*Registry)(nil)

// New builds the registry; Start runs it.
func New(client kubernetes.Interface, opts Options) *Registry {
	if opts.DomainSuffix == "" {
		opts.DomainSuffix = registry.DefaultDomainSuffix
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "Kubernetes"
	}
	if opts.Coalesce == 0 {
		opts.Coalesce = 50 * time.Millisecond
	}
	if opts.SystemNamespace == "" {
		opts.SystemNamespace = "trellis-system"
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(transform))
	r := &Registry{
		opts:     opts,
		factory:  f,
		services: f.Core().V1().Services().Informer(),
		slices:   f.Discovery().V1().EndpointSlices().Informer(),
		pods:     f.Core().V1().Pods().Informer(),
		nodes:    f.Core().V1().Nodes().Informer(),
		nss:      f.Core().V1().Namespaces().Informer(),
		dirty:    make(chan struct{}, 1),
		dirtySvc: map[string]bool{},
	}
	r.snap.Store(registry.NewSnapshot(nil, nil))
	_ = r.slices.AddIndexers(cache.Indexers{byService: sliceService})
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.touch(o) },
		UpdateFunc: func(old, o any) { r.touch(old); r.touch(o) },
		DeleteFunc: func(o any) { r.touch(o) },
	}
	for _, inf := range []cache.SharedIndexInformer{r.services, r.slices, r.pods, r.nodes, r.nss} {
		_, _ = inf.AddEventHandler(h)
	}
	return r
}

// Start runs the informers and the rebuild loop until ctx ends, and waits
// for the first full sync; it returns an error if ctx ends first.
func (r *Registry) Start(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("kube registry: already started")
	}
	r.factory.Start(ctx.Done())
	for typ, ok := range r.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("kube registry: %v informer did not sync: %w", typ, ctx.Err())
		}
	}
	r.rebuild()
	r.synced.Store(true)
	go r.loop(ctx)
	return nil
}

// Synced reports whether the first full snapshot is built.
func (r *Registry) Synced() bool { return r.synced.Load() }

// Builds is how many snapshots have been built (for tests and metrics).
func (r *Registry) Builds() int64 { return r.builds.Load() }

// Snapshot returns the current snapshot; it must not be altered.
func (r *Registry) Snapshot() *registry.Snapshot { return r.snap.Load() }

// Subscribe registers fn to be called after every new snapshot.
func (r *Registry) Subscribe(fn func()) {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
}

// NamespaceLabels returns a namespace's labels from the informer, for the
// injection webhook.
func (r *Registry) NamespaceLabels(_ context.Context, name string) (map[string]string, error) {
	obj, ok, err := r.nss.GetStore().GetByKey(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("namespace %s not found", name)
	}
	return obj.(*namespace).Labels, nil
}

func (r *Registry) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

func (r *Registry) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		}
		// Gather the burst, then build once.
		t := time.NewTimer(r.opts.Coalesce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-r.dirty:
		default:
		}
		if !r.rebuild() {
			continue
		}
		r.mu.Lock()
		subs := append([]func(){}, r.subs...)
		r.mu.Unlock()
		for _, fn := range subs {
			fn()
		}
	}
}

// built is one Service's part of the snapshot, reused while nothing it
// was built from changes.
type built struct {
	svc  *registry.Service
	eps  []*registry.Endpoint
	pods []string // "ns/name" of the pods behind eps
}

// touch records what an event may change: a Service, the Service of an
// EndpointSlice, the Services whose endpoints a Pod backs; Nodes and
// Namespaces (locality, network) change everything.
func (r *Registry) touch(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	r.dmu.Lock()
	switch o := obj.(type) {
	case *service:
		r.dirtySvc[o.Namespace+"/"+o.Name] = true
	case *slice:
		if o.Service != "" {
			r.dirtySvc[o.Namespace+"/"+o.Service] = true
		}
	case *pod:
		for _, k := range r.podSvcs[o.Namespace+"/"+o.Name] {
			r.dirtySvc[k] = true
		}
	default:
		r.dirtyAll = true
	}
	r.dmu.Unlock()
	r.markDirty()
}

// rebuild makes a new snapshot, rebuilding only the Services touched since
// the last one. It reports whether anything changed. It runs on one
// goroutine at a time (Start, then the loop).
func (r *Registry) rebuild() bool {
	r.dmu.Lock()
	all := r.dirtyAll || r.cache == nil
	dirty := r.dirtySvc
	r.dirtySvc, r.dirtyAll = map[string]bool{}, false
	r.dmu.Unlock()
	if !all && len(dirty) == 0 {
		return false
	}
	in := buildInput{opts: r.opts, r: r}
	objs := r.services.GetStore().List()
	next := make(map[string]*built, len(objs))
	svcs := make([]*registry.Service, 0, len(objs))
	eps := make(map[string][]*registry.Endpoint, len(objs))
	podSvcs := make(map[string][]string, len(r.podSvcs))
	for _, o := range objs {
		s, ok := o.(*service)
		if !ok {
			continue
		}
		k := s.Namespace + "/" + s.Name
		b := r.cache[k]
		if all || dirty[k] || b == nil {
			b = &built{svc: in.service(s)}
			b.eps, b.pods = in.endpoints(s, b.svc)
		}
		next[k] = b
		svcs = append(svcs, b.svc)
		if len(b.eps) > 0 {
			eps[b.svc.Hostname] = b.eps
		}
		for _, p := range b.pods {
			podSvcs[p] = append(podSvcs[p], k)
		}
	}
	r.cache = next
	r.dmu.Lock()
	r.podSvcs = podSvcs
	r.dmu.Unlock()
	r.snap.Store(registry.NewSnapshot(svcs, eps))
	r.builds.Add(1)
	return true
}

// buildInput reads the informer stores while building.
type buildInput struct {
	opts Options
	r    *Registry
}

func (in *buildInput) pod(key string) *pod {
	o, ok, _ := in.r.pods.GetStore().GetByKey(key)
	if !ok {
		return nil
	}
	p, _ := o.(*pod)
	return p
}

func (in *buildInput) node(name string) *node {
	o, ok, _ := in.r.nodes.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	n, _ := o.(*node)
	return n
}

func (in *buildInput) namespace(name string) *namespace {
	o, ok, _ := in.r.nss.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	n, _ := o.(*namespace)
	return n
}

func (in *buildInput) slicesOf(key string) []*slice {
	objs, _ := in.r.slices.GetIndexer().ByIndex(byService, key)
	out := make([]*slice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*slice); ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// byService indexes EndpointSlices by "namespace/service".
const byService = "service"

func sliceService(obj any) ([]string, error) {
	if s, ok := obj.(*slice); ok && s.Service != "" {
		return []string{s.Namespace + "/" + s.Service}, nil
	}
	return nil, nil
}

func (in *buildInput) service(s *service) *registry.Service {
	host := s.Name + "." + s.Namespace + ".svc." + in.opts.DomainSuffix
	rs := &registry.Service{
		Hostname:          host,
		Name:              s.Name,
		Namespace:         s.Namespace,
		Addresses:         s.ClusterIPs,
		Labels:            s.Labels,
		ExternalAddresses: s.External,
		Source:            "kube:Service/" + s.Namespace + "/" + s.Name,
	}
	switch {
	case s.ExternalName != "":
		rs.Resolution = registry.ResolutionDNS
	case s.Headless:
		rs.Resolution = registry.ResolutionNone
	default:
		rs.Resolution = registry.ResolutionStatic
	}
	for _, p := range s.Ports {
		if p.UDP {
			continue
		}
		rs.Ports = append(rs.Ports, registry.Port{Name: p.Name, Number: uint32(p.Port), Protocol: Protocol(p.Name, p.AppProtocol), TargetPort: uint32(p.TargetPort)})
	}
	if v := s.Labels["networking.istio.io/exportTo"]; v != "" {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				rs.ExportTo = append(rs.ExportTo, ns)
			}
		}
	}
	return rs
}

func (in *buildInput) endpoints(s *service, rs *registry.Service) ([]*registry.Endpoint, []string) {
	if s.ExternalName != "" {
		out := make([]*registry.Endpoint, 0, len(rs.Ports))
		for _, p := range rs.Ports {
			out = append(out, &registry.Endpoint{Service: rs.Hostname, ServicePort: p.Number, Address: s.ExternalName, Port: p.Number, Namespace: s.Namespace, Cluster: in.opts.ClusterID, Healthy: true})
		}
		return out, nil
	}
	var out []*registry.Endpoint
	var pods []string
	for _, sl := range in.slicesOf(s.Namespace + "/" + s.Name) {
		for _, sp := range sl.Ports {
			var svcPort *servicePort
			for i := range s.Ports {
				if s.Ports[i].Name == sp.Name && !s.Ports[i].UDP {
					svcPort = &s.Ports[i]
					break
				}
			}
			if svcPort == nil {
				continue
			}
			for _, e := range sl.Endpoints {
				var p *pod
				if e.Pod != "" {
					pk := s.Namespace + "/" + e.Pod
					p = in.pod(pk)
					pods = append(pods, pk)
				}
				meta := in.workload(s.Namespace, e, p)
				for _, addr := range e.Addresses {
					ep := *meta
					ep.Service = rs.Hostname
					ep.ServicePort = uint32(svcPort.Port)
					ep.Address = addr
					ep.Port = uint32(sp.Port)
					ep.Healthy = e.Ready
					out = append(out, &ep)
				}
			}
		}
	}
	registry.SortEndpoints(out)
	return out, pods
}

// workload fills the identity part of an endpoint from its pod, node and
// namespace.
func (in *buildInput) workload(ns string, e sliceEndpoint, p *pod) *registry.Endpoint {
	ep := &registry.Endpoint{Namespace: ns, Cluster: in.opts.ClusterID, Network: in.opts.Network}
	if n := in.namespace(in.opts.SystemNamespace); n != nil && n.Labels[labelNetwork] != "" {
		ep.Network = n.Labels[labelNetwork]
	}
	if n := in.namespace(ns); n != nil && n.Labels[labelNetwork] != "" {
		ep.Network = n.Labels[labelNetwork]
	}
	nodeName := e.Node
	if p != nil {
		ep.Labels = p.Labels
		ep.Workload = p.Workload
		ep.ServiceAccount = p.ServiceAccount
		if ep.ServiceAccount == "" {
			ep.ServiceAccount = "default"
		}
		if v := p.Labels[labelNetwork]; v != "" {
			ep.Network = v
		}
		if nodeName == "" {
			nodeName = p.Node
		}
		if l := p.Labels[labelLocality]; l != "" {
			ep.Locality = strings.ReplaceAll(l, ".", "/")
		}
	}
	if ep.Locality == "" {
		if n := in.node(nodeName); n != nil && n.Locality != "" {
			ep.Locality = n.Locality
		} else if e.Zone != "" {
			ep.Locality = "/" + e.Zone + "/"
		}
	}
	return ep
}
