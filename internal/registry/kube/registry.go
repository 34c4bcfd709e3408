package kube

import (
	"context"
	"fmt"
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
	// Network is the endpoints' network when neither the pod nor its
	// namespace carries topology.istio.io/network.
	Network string
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
	}
	r.snap.Store(registry.NewSnapshot(nil, nil))
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.markDirty() },
		UpdateFunc: func(any, any) { r.markDirty() },
		DeleteFunc: func(any) { r.markDirty() },
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
		r.rebuild()
		r.mu.Lock()
		subs := append([]func(){}, r.subs...)
		r.mu.Unlock()
		for _, fn := range subs {
			fn()
		}
	}
}

func (r *Registry) rebuild() {
	in := buildInput{opts: r.opts, pods: map[string]*pod{}, nodes: map[string]*node{}, nss: map[string]*namespace{}, slices: map[string][]*slice{}}
	for _, o := range r.services.GetStore().List() {
		if s, ok := o.(*service); ok {
			in.services = append(in.services, s)
		}
	}
	for _, o := range r.slices.GetStore().List() {
		if s, ok := o.(*slice); ok && s.Service != "" {
			k := s.Namespace + "/" + s.Service
			in.slices[k] = append(in.slices[k], s)
		}
	}
	for _, o := range r.pods.GetStore().List() {
		if p, ok := o.(*pod); ok {
			in.pods[p.Namespace+"/"+p.Name] = p
		}
	}
	for _, o := range r.nodes.GetStore().List() {
		if n, ok := o.(*node); ok {
			in.nodes[n.Name] = n
		}
	}
	for _, o := range r.nss.GetStore().List() {
		if n, ok := o.(*namespace); ok {
			in.nss[n.Name] = n
		}
	}
	r.snap.Store(in.build())
	r.builds.Add(1)
}

type buildInput struct {
	opts     Options
	services []*service
	slices   map[string][]*slice // "ns/service"
	pods     map[string]*pod     // "ns/name"
	nodes    map[string]*node
	nss      map[string]*namespace
}

func (in *buildInput) build() *registry.Snapshot {
	svcs := make([]*registry.Service, 0, len(in.services))
	eps := make(map[string][]*registry.Endpoint, len(in.services))
	for _, s := range in.services {
		rs := in.service(s)
		svcs = append(svcs, rs)
		if e := in.endpoints(s, rs); len(e) > 0 {
			eps[rs.Hostname] = e
		}
	}
	return registry.NewSnapshot(svcs, eps)
}

func (in *buildInput) service(s *service) *registry.Service {
	host := s.Name + "." + s.Namespace + ".svc." + in.opts.DomainSuffix
	rs := &registry.Service{
		Hostname:  host,
		Name:      s.Name,
		Namespace: s.Namespace,
		Addresses: s.ClusterIPs,
		Labels:    s.Labels,
		Source:    "kube:Service/" + s.Namespace + "/" + s.Name,
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

func (in *buildInput) endpoints(s *service, rs *registry.Service) []*registry.Endpoint {
	if s.ExternalName != "" {
		out := make([]*registry.Endpoint, 0, len(rs.Ports))
		for _, p := range rs.Ports {
			out = append(out, &registry.Endpoint{Service: rs.Hostname, ServicePort: p.Number, Address: s.ExternalName, Port: p.Number, Namespace: s.Namespace, Cluster: in.opts.ClusterID, Healthy: true})
		}
		return out
	}
	var out []*registry.Endpoint
	for _, sl := range in.slices[s.Namespace+"/"+s.Name] {
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
				p := in.pods[s.Namespace+"/"+e.Pod]
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
	return out
}

// workload fills the identity part of an endpoint from its pod, node and
// namespace.
func (in *buildInput) workload(ns string, e sliceEndpoint, p *pod) *registry.Endpoint {
	ep := &registry.Endpoint{Namespace: ns, Cluster: in.opts.ClusterID, Network: in.opts.Network}
	if n := in.nss[ns]; n != nil && n.Labels[labelNetwork] != "" {
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
		if n := in.nodes[nodeName]; n != nil && n.Locality != "" {
			ep.Locality = n.Locality
		} else if e.Zone != "" {
			ep.Locality = "/" + e.Zone + "/"
		}
	}
	return ep
}
