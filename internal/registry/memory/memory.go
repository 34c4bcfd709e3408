package memory

import (
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// Registry is a registry.Source held in memory. The zero value is an empty
// registry ready to use. It is safe for concurrent use; Snapshot never
// blocks on writers.
type Registry struct {
	mu        sync.Mutex // serialises writers and guards the maps below
	services  map[string]*registry.Service
	endpoints map[string][]*registry.Endpoint
	subs      []func()

	snap atomic.Pointer[registry.Snapshot]
}

var _ registry.Source = (*Registry)(nil)

// New returns a registry holding the snapshot's services and endpoints
// (nil means empty).
func New(s *registry.Snapshot) *Registry {
	r := &Registry{}
	r.Replace(s)
	return r
}

// Snapshot returns the current immutable view.
func (r *Registry) Snapshot() *registry.Snapshot {
	if s := r.snap.Load(); s != nil {
		return s
	}
	return &registry.Snapshot{Endpoints: map[string][]*registry.Endpoint{}}
}

// Subscribe registers fn to be called after every change, from the writer's
// goroutine with no lock held.
func (r *Registry) Subscribe(fn func()) {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
}

// SetService adds or replaces the service with svc.Hostname. The registry
// keeps svc; the caller must not alter it afterwards.
func (r *Registry) SetService(svc *registry.Service) {
	r.update(func() {
		r.services[svc.Hostname] = svc
	})
}

// DeleteService removes a service and its endpoints.
func (r *Registry) DeleteService(hostname string) {
	r.update(func() {
		delete(r.services, hostname)
		delete(r.endpoints, hostname)
	})
}

// SetEndpoints replaces the endpoints of hostname (nil or empty removes
// them). Endpoints of a hostname with no service are kept and appear once
// the service is set.
func (r *Registry) SetEndpoints(hostname string, eps []*registry.Endpoint) {
	cp := append([]*registry.Endpoint(nil), eps...)
	r.update(func() {
		if len(cp) == 0 {
			delete(r.endpoints, hostname)
			return
		}
		r.endpoints[hostname] = cp
	})
}

// Replace swaps the whole content for the snapshot's (nil means empty).
func (r *Registry) Replace(s *registry.Snapshot) {
	r.update(func() {
		r.services = map[string]*registry.Service{}
		r.endpoints = map[string][]*registry.Endpoint{}
		if s == nil {
			return
		}
		for _, svc := range s.Services {
			r.services[svc.Hostname] = svc
		}
		for h, eps := range s.Endpoints {
			r.endpoints[h] = append([]*registry.Endpoint(nil), eps...)
		}
	})
}

func (r *Registry) update(change func()) {
	r.mu.Lock()
	if r.services == nil {
		r.services = map[string]*registry.Service{}
		r.endpoints = map[string][]*registry.Endpoint{}
	}
	change()
	services := make([]*registry.Service, 0, len(r.services))
	for _, svc := range r.services {
		services = append(services, svc)
	}
	eps := make(map[string][]*registry.Endpoint, len(r.endpoints))
	for h, list := range r.endpoints {
		eps[h] = append([]*registry.Endpoint(nil), list...)
	}
	r.snap.Store(registry.NewSnapshot(services, eps))
	subs := append([]func(){}, r.subs...)
	r.mu.Unlock()
	for _, fn := range subs {
		fn()
	}
}
