package telemetry

import "sync"

// Peer is one side of a call, as Istio's labels name it: the source_* or
// destination_* workload labels. The zero value means "unknown" and renders
// as Istio does ("unknown").
type Peer struct {
	Workload          string
	Namespace         string
	Principal         string // spiffe://cluster.local/ns/NS/sa/SA, or empty
	App               string
	Version           string
	CanonicalService  string
	CanonicalRevision string
	Cluster           string
}

// Service is the destination service of a call (destination_service,
// destination_service_name, destination_service_namespace).
type Service struct {
	Host      string // FQDN, e.g. reviews.default.svc.cluster.local
	Name      string
	Namespace string
}

// Interner hands out one pointer per distinct Peer or Service value, so
// that series keyed by pointers never duplicate a label set. It is safe for
// concurrent use; a hit takes a read lock and does not allocate.
type Interner struct {
	mu       sync.RWMutex
	peers    map[Peer]*Peer
	services map[Service]*Service
}

// Peer returns the interned pointer for p.
func (in *Interner) Peer(p Peer) *Peer {
	in.mu.RLock()
	got, ok := in.peers[p]
	in.mu.RUnlock()
	if ok {
		return got
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if got, ok := in.peers[p]; ok {
		return got
	}
	if in.peers == nil {
		in.peers = map[Peer]*Peer{}
	}
	np := new(Peer)
	*np = p
	in.peers[p] = np
	return np
}

// Service returns the interned pointer for s.
func (in *Interner) Service(s Service) *Service {
	in.mu.RLock()
	got, ok := in.services[s]
	in.mu.RUnlock()
	if ok {
		return got
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if got, ok := in.services[s]; ok {
		return got
	}
	if in.services == nil {
		in.services = map[Service]*Service{}
	}
	ns := new(Service)
	*ns = s
	in.services[s] = ns
	return ns
}
