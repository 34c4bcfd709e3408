package config

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
)

// Kinds Trellis understands. The Spec of a Resource of each kind is the
// istio.io/api message named in the comment (v1 and v1beta1 are aliases of
// v1alpha3 for networking, and of v1beta1 for security).
const (
	KindVirtualService        = "VirtualService"        // *networkingv1alpha3.VirtualService
	KindDestinationRule       = "DestinationRule"       // *networkingv1alpha3.DestinationRule
	KindGateway               = "Gateway"               // *networkingv1alpha3.Gateway
	KindServiceEntry          = "ServiceEntry"          // *networkingv1alpha3.ServiceEntry
	KindWorkloadEntry         = "WorkloadEntry"         // *networkingv1alpha3.WorkloadEntry
	KindWorkloadGroup         = "WorkloadGroup"         // *networkingv1alpha3.WorkloadGroup
	KindSidecar               = "Sidecar"               // *networkingv1alpha3.Sidecar
	KindPeerAuthentication    = "PeerAuthentication"    // *securityv1beta1.PeerAuthentication
	KindAuthorizationPolicy   = "AuthorizationPolicy"   // *securityv1beta1.AuthorizationPolicy
	KindRequestAuthentication = "RequestAuthentication" // *securityv1beta1.RequestAuthentication
	KindTelemetry             = "Telemetry"             // *telemetryv1alpha1.Telemetry (v1 is an alias)
)

// Meta is the Kubernetes-style object metadata Trellis keeps.
type Meta struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
	// Generation and ResourceVersion come from Kubernetes; zero for files.
	Generation      int64
	ResourceVersion string
}

// Resource is one Istio object. It is never modified after it is built;
// replace it instead.
type Resource struct {
	APIVersion string // as written, e.g. "networking.istio.io/v1beta1"
	Kind       string // one of the Kind* constants
	Meta
	Spec proto.Message
	// Source says where the object came from, for error messages:
	// "dir/file.yaml#2" (second document) or "kube:VirtualService/ns/name".
	Source string
}

// Key identifies a resource within a snapshot.
type Key struct {
	Kind      string
	Namespace string
	Name      string
}

func (k Key) String() string { return fmt.Sprintf("%s/%s/%s", k.Kind, k.Namespace, k.Name) }

// Key returns the resource's identity.
func (r *Resource) Key() Key { return Key{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name} }

// Snapshot is an immutable set of resources. The zero value is empty and
// usable. Slices returned by its methods must not be altered.
type Snapshot struct {
	byKind map[string][]*Resource
	byKey  map[Key]*Resource
	// version and kube are set by Store.
	version uint64
	kube    []*KubeObject
}

// Version is the Store version that built the snapshot; zero for snapshots
// made with NewSnapshot.
func (s *Snapshot) Version() uint64 {
	if s == nil {
		return 0
	}
	return s.version
}

// KubeObjects returns the non-Istio Kubernetes objects (Services, ...) the
// store's sources hold, in source order. It must not be altered.
func (s *Snapshot) KubeObjects() []*KubeObject {
	if s == nil {
		return nil
	}
	return s.kube
}

// NewSnapshot builds a snapshot. Later resources with the same Key replace
// earlier ones. Each kind's list is sorted by namespace, then name.
func NewSnapshot(rs []*Resource) *Snapshot {
	s := &Snapshot{byKind: map[string][]*Resource{}, byKey: map[Key]*Resource{}}
	for _, r := range rs {
		s.byKey[r.Key()] = r
	}
	for _, r := range s.byKey {
		s.byKind[r.Kind] = append(s.byKind[r.Kind], r)
	}
	for _, list := range s.byKind {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Namespace != list[j].Namespace {
				return list[i].Namespace < list[j].Namespace
			}
			return list[i].Name < list[j].Name
		})
	}
	return s
}

// List returns the resources of one kind, sorted by namespace and name.
func (s *Snapshot) List(kind string) []*Resource {
	if s == nil {
		return nil
	}
	return s.byKind[kind]
}

// Get returns one resource, or nil.
func (s *Snapshot) Get(k Key) *Resource {
	if s == nil {
		return nil
	}
	return s.byKey[k]
}

// All returns every resource, sorted by kind, namespace and name.
func (s *Snapshot) All() []*Resource {
	if s == nil {
		return nil
	}
	kinds := make([]string, 0, len(s.byKind))
	for k := range s.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var out []*Resource
	for _, k := range kinds {
		out = append(out, s.byKind[k]...)
	}
	return out
}

// Len is the number of resources.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byKey)
}
