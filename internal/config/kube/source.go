package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
)

// SourceName is the config.Store source this package fills.
const SourceName = "kube"

// Options configure the source.
type Options struct {
	// Events, when set, receives a Warning event for each invalid object.
	Events kubernetes.Interface
	// Log receives one line per invalid object; nil discards.
	Log *slog.Logger
	// Coalesce gathers a burst of changes into one store update; zero
	// means 50ms.
	Coalesce time.Duration
	// Rediscover is how often kinds whose CRD is missing are looked for
	// again; zero means 30s.
	Rediscover time.Duration
}

// Source feeds a config.Store from the API server.
type Source struct {
	dyn   dynamic.Interface
	disc  discovery.DiscoveryInterface
	store *config.Store
	opts  Options

	mu       sync.Mutex
	watching map[string]string // kind -> version watched
	stores   map[string]cache.Store
	invalid  map[string]string // "Kind ns/name" -> problems
	dirty    chan struct{}
}

// New returns a source writing into store.
func New(dyn dynamic.Interface, disc discovery.DiscoveryInterface, store *config.Store, opts Options) *Source {
	if opts.Coalesce == 0 {
		opts.Coalesce = 50 * time.Millisecond
	}
	if opts.Rediscover == 0 {
		opts.Rediscover = 30 * time.Second
	}
	return &Source{dyn: dyn, disc: disc, store: store, opts: opts,
		watching: map[string]string{}, stores: map[string]cache.Store{}, invalid: map[string]string{},
		dirty: make(chan struct{}, 1)}
}

// item is what the informer stores: the converted resource, or why it was
// refused.
type item struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	res      *config.Resource
	problems []string
}

func (i *item) DeepCopyObject() runtime.Object { c := *i; return &c }

// Start discovers the served Istio kinds, starts an informer for each,
// waits for them to sync and fills the store once; it keeps watching
// until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	if err := s.discover(ctx); err != nil {
		return err
	}
	s.publish()
	go s.loop(ctx)
	return nil
}

// Invalid returns the objects left out and why, sorted ("Kind ns/name:
// field: message").
func (s *Source) Invalid() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.invalid))
	for k, v := range s.invalid {
		out = append(out, k+": "+v)
	}
	sort.Strings(out)
	return out
}

// Watching returns kind -> version for the kinds being watched.
func (s *Source) Watching() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.watching))
	for k, v := range s.watching {
		out[k] = v
	}
	return out
}

// served returns, per group, the served versions (from discovery).
func (s *Source) served() (map[string]map[string]map[string]string, error) {
	// group -> version -> kind -> resource
	out := map[string]map[string]map[string]string{}
	groups, err := s.disc.ServerGroups()
	if err != nil {
		return nil, fmt.Errorf("discover API groups: %w", err)
	}
	for _, g := range groups.Groups {
		if g.Name != config.GroupNetworking && g.Name != config.GroupSecurity && g.Name != config.GroupTelemetry {
			continue
		}
		for _, v := range g.Versions {
			list, err := s.disc.ServerResourcesForGroupVersion(v.GroupVersion)
			if err != nil {
				continue
			}
			for _, r := range list.APIResources {
				if strings.Contains(r.Name, "/") {
					continue
				}
				if out[g.Name] == nil {
					out[g.Name] = map[string]map[string]string{}
				}
				if out[g.Name][v.Version] == nil {
					out[g.Name][v.Version] = map[string]string{}
				}
				out[g.Name][v.Version][r.Kind] = r.Name
			}
		}
	}
	return out, nil
}

// discover starts informers for kinds not watched yet and waits for them.
func (s *Source) discover(ctx context.Context) error {
	served, err := s.served()
	if err != nil {
		return err
	}
	var started []cache.SharedIndexInformer
	for _, k := range config.Kinds() {
		s.mu.Lock()
		_, ok := s.watching[k.Kind]
		s.mu.Unlock()
		if ok {
			continue
		}
		for _, v := range k.Versions { // newest first
			res, ok := served[k.Group][v][k.Kind]
			if !ok {
				continue
			}
			gvr := schema.GroupVersionResource{Group: k.Group, Version: v, Resource: res}
			inf := dynamicinformer.NewFilteredDynamicInformer(s.dyn, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
			kind := k.Kind
			if err := inf.SetTransform(func(obj any) (any, error) { return s.convert(ctx, kind, obj), nil }); err != nil {
				return err
			}
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(any) { s.markDirty() },
				UpdateFunc: func(any, any) { s.markDirty() },
				DeleteFunc: func(obj any) { s.forget(kind, obj); s.markDirty() },
			})
			go inf.Run(ctx.Done())
			s.mu.Lock()
			s.watching[k.Kind] = v
			s.stores[k.Kind] = inf.GetStore()
			s.mu.Unlock()
			started = append(started, inf)
			break
		}
	}
	for _, inf := range started {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("config informers did not sync: %w", ctx.Err())
		}
	}
	return nil
}

func (s *Source) convert(ctx context.Context, kind string, obj any) *item {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		if it, ok := obj.(*item); ok {
			return it
		}
		return &item{problems: []string{fmt.Sprintf("unexpected object %T", obj)}}
	}
	it := &item{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), ResourceVersion: u.GetResourceVersion()}}
	display := config.ResourceName(kind, u.GetNamespace(), u.GetName())
	raw, err := u.MarshalJSON()
	if err != nil {
		it.problems = []string{err.Error()}
	} else {
		source := "kube:" + kind + "/" + u.GetNamespace() + "/" + u.GetName()
		res, err := config.ParseWithOptions(raw, source, config.ParseOptions{DefaultNamespace: u.GetNamespace()})
		switch {
		case err != nil:
			it.problems = []string{err.Error()}
		case len(res.Errors) > 0:
			for _, e := range res.Errors {
				it.problems = append(it.problems, withoutSource(e))
			}
		case len(res.Resources) == 1:
			r := res.Resources[0]
			r.Generation = u.GetGeneration()
			r.ResourceVersion = u.GetResourceVersion()
			if v := validate.Resource(r); !v.OK() {
				for _, is := range v.Errors {
					it.problems = append(it.problems, withoutSource(is))
				}
			} else {
				it.res = r
				for _, is := range v.NotEnforced {
					if s.opts.Log != nil {
						s.opts.Log.Error("security resource accepted but not enforced", "kind", kind, "namespace", u.GetNamespace(), "name", u.GetName(), "finding", withoutSource(is))
					}
				}
			}
		default:
			it.problems = []string{fmt.Sprintf("got %d resources from one object, want 1", len(res.Resources))}
		}
	}
	s.mu.Lock()
	if len(it.problems) > 0 {
		s.invalid[display] = strings.Join(it.problems, "; ")
	} else {
		delete(s.invalid, display)
	}
	s.mu.Unlock()
	if len(it.problems) > 0 {
		s.report(ctx, kind, u, it.problems)
	}
	return it
}

func withoutSource(err error) string {
	if is, ok := err.(*config.Issue); ok {
		c := *is
		c.Source, c.Resource = "", ""
		return c.String()
	}
	if is, ok := err.(config.Issue); ok {
		is.Source, is.Resource = "", ""
		return is.String()
	}
	return err.Error()
}

// report logs an invalid object and records a Warning event on it.
func (s *Source) report(ctx context.Context, kind string, u *unstructured.Unstructured, problems []string) {
	msg := strings.Join(problems, "; ")
	if s.opts.Log != nil {
		s.opts.Log.Warn("invalid Istio object ignored; the last valid config keeps serving", "kind", kind, "namespace", u.GetNamespace(), "name", u.GetName(), "problems", msg)
	}
	if s.opts.Events == nil {
		return
	}
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: u.GetName() + ".", Namespace: u.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: u.GetAPIVersion(), Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(),
			UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		},
		Reason: "InvalidConfig", Message: "ignored by trellisd: " + msg, Type: corev1.EventTypeWarning,
		Source: corev1.EventSource{Component: "trellisd"}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "trellis.io/trellisd", ReportingInstance: "trellisd",
	}
	go func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = s.opts.Events.CoreV1().Events(u.GetNamespace()).Create(cctx, ev, metav1.CreateOptions{})
	}()
}

func (s *Source) forget(kind string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if it, ok := obj.(*item); ok {
		s.mu.Lock()
		delete(s.invalid, config.ResourceName(kind, it.Namespace, it.Name))
		s.mu.Unlock()
	}
}

func (s *Source) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

func (s *Source) loop(ctx context.Context) {
	tick := time.NewTicker(s.opts.Rediscover)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if len(s.Watching()) < len(config.Kinds()) {
				if err := s.discover(ctx); err == nil {
					s.publish()
				} else if s.opts.Log != nil {
					s.opts.Log.Warn("rediscover Istio kinds", "err", err)
				}
			}
		case <-s.dirty:
			t := time.NewTimer(s.opts.Coalesce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			select {
			case <-s.dirty:
			default:
			}
			s.publish()
		}
	}
}

// publish writes every valid resource to the store as one change.
func (s *Source) publish() {
	s.mu.Lock()
	var rs []*config.Resource
	for _, st := range s.stores {
		for _, o := range st.List() {
			if it, ok := o.(*item); ok && it.res != nil {
				rs = append(rs, it.res)
			}
		}
	}
	s.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].Key().String() < rs[j].Key().String() })
	s.store.Set(SourceName, rs)
}
