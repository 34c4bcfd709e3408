package config

import (
	"sort"
	"sync"
)

// Store aggregates named sources of resources ("file:/etc/x.yaml",
// "kube") into one immutable Snapshot. It is safe for concurrent use.
// Every change builds a new Snapshot with a higher version and then calls
// the subscribers, outside the store's lock, in the order they subscribed.
type Store struct {
	mu      sync.Mutex
	sources map[string][]*Resource
	kube    map[string][]*KubeObject
	version uint64
	snap    *Snapshot
	subs    []func(*Snapshot)

	// notifyMu serialises subscriber calls so they see snapshots in order;
	// delivered is the last version they were given (guarded by notifyMu).
	notifyMu  sync.Mutex
	delivered uint64
}

// NewStore returns an empty store whose snapshot has version 0.
func NewStore() *Store {
	return &Store{
		sources: map[string][]*Resource{},
		kube:    map[string][]*KubeObject{},
		snap:    NewSnapshot(nil),
	}
}

// Change is one source's new content, for Apply.
type Change struct {
	Source    string
	Resources []*Resource
	Kube      []*KubeObject
	// Delete removes the source; Resources and Kube are ignored.
	Delete bool
}

// Apply makes several changes as one: one new snapshot, one notification.
// An empty list changes nothing.
func (s *Store) Apply(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.mu.Lock()
	for _, c := range changes {
		if c.Delete || len(c.Resources) == 0 {
			delete(s.sources, c.Source)
		} else {
			s.sources[c.Source] = c.Resources
		}
		if c.Delete || len(c.Kube) == 0 {
			delete(s.kube, c.Source)
		} else {
			s.kube[c.Source] = c.Kube
		}
	}
	s.rebuildAndNotify()
}

// Set replaces the resources of one source, keeping its Kubernetes
// objects. The slice and the resources must not be altered afterwards.
func (s *Store) Set(source string, rs []*Resource) {
	s.mu.Lock()
	if len(rs) == 0 {
		delete(s.sources, source)
	} else {
		s.sources[source] = rs
	}
	s.rebuildAndNotify()
}

// SetKube replaces the non-Istio Kubernetes objects (Services, ...) of one
// source, keeping its resources; local mode reads them from the snapshot's
// KubeObjects.
func (s *Store) SetKube(source string, objs []*KubeObject) {
	s.mu.Lock()
	if len(objs) == 0 {
		delete(s.kube, source)
	} else {
		s.kube[source] = objs
	}
	s.rebuildAndNotify()
}

// SetAll replaces both the resources and the Kubernetes objects of one
// source in a single change.
func (s *Store) SetAll(source string, rs []*Resource, objs []*KubeObject) {
	s.Apply([]Change{{Source: source, Resources: rs, Kube: objs}})
}

// Delete removes a source and everything it held. Deleting an unknown
// source changes nothing.
func (s *Store) Delete(source string) {
	s.mu.Lock()
	_, had := s.sources[source]
	_, hadKube := s.kube[source]
	if !had && !hadKube {
		s.mu.Unlock()
		return
	}
	delete(s.sources, source)
	delete(s.kube, source)
	s.rebuildAndNotify()
}

// Sources returns the names of the sources that hold something, sorted.
func (s *Store) Sources() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for k := range s.sources {
		seen[k] = true
	}
	for k := range s.kube {
		seen[k] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Snapshot returns the current snapshot. It is never nil.
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Version is the current snapshot's version; it grows by one per change.
func (s *Store) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Subscribe registers fn to be called with the new snapshot after every
// change. Calls are serialised and made without the store's lock held, so
// fn may read the store (it must not change it synchronously). Snapshots
// arrive in increasing version order; when changes race, a subscriber may
// be handed only the newest of them, never an older one after a newer.
func (s *Store) Subscribe(fn func(*Snapshot)) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

// rebuildAndNotify is called with s.mu held and releases it.
func (s *Store) rebuildAndNotify() {
	names := make([]string, 0, len(s.sources))
	for k := range s.sources {
		names = append(names, k)
	}
	sort.Strings(names)
	var all []*Resource
	for _, k := range names {
		all = append(all, s.sources[k]...)
	}
	kn := make([]string, 0, len(s.kube))
	for k := range s.kube {
		kn = append(kn, k)
	}
	sort.Strings(kn)
	var kube []*KubeObject
	for _, k := range kn {
		kube = append(kube, s.kube[k]...)
	}
	s.version++
	snap := NewSnapshot(all)
	snap.version = s.version
	snap.kube = kube
	s.snap = snap
	s.mu.Unlock()

	// Deliver the newest snapshot, one delivery at a time. A change made
	// while another goroutine is delivering is picked up by whichever
	// delivery runs next, so subscribers always see increasing versions and
	// always end with the latest one.
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.mu.Lock()
	latest := s.snap
	subs := append([]func(*Snapshot){}, s.subs...)
	s.mu.Unlock()
	if latest.version <= s.delivered {
		return
	}
	s.delivered = latest.version
	for _, fn := range subs {
		fn(latest)
	}
}
