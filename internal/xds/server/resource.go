package server

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// pushOrder is the order types are sent in on a push: clusters before the
// endpoints they use, listeners before their routes (Envoy's warming order).
var pushOrder = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.VirtualHostType, resourcev3.SecretType}

// ShortType returns the conventional abbreviation of a type URL ("CDS").
func ShortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "CDS"
	case resourcev3.EndpointType:
		return "EDS"
	case resourcev3.ListenerType:
		return "LDS"
	case resourcev3.RouteType:
		return "RDS"
	case resourcev3.VirtualHostType:
		return "VHDS"
	case resourcev3.SecretType:
		return "SDS"
	}
	return typeURL
}

// Resource is one marshalled xDS resource. Resources are immutable and are
// shared by every connection that is sent them.
type Resource struct {
	Name string
	// Version is a hash of the marshalled bytes: equal versions mean equal
	// resources.
	Version string
	Any     *anypb.Any
}

// NewResource marshals m deterministically and versions it by content.
func NewResource(name string, m proto.Message) (*Resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", name, err)
	}
	a := &anypb.Any{TypeUrl: resourcev3.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: b}
	h := fnv.New64a()
	h.Write(b)
	return &Resource{Name: name, Version: strconv.FormatUint(h.Sum64(), 36), Any: a}, nil
}

// Snapshot is everything one proxy should have: resources by type URL, each
// list sorted by name with unique names. A Snapshot and its lists are
// immutable once returned by a Generator; lists may be shared between
// snapshots.
type Snapshot struct {
	// Version names the input the snapshot was generated from; it is sent as
	// version_info (SotW) and system_version_info (Delta).
	Version   string
	Resources map[string][]*Resource
}

// SortResources sorts a list by name, for building snapshots.
func SortResources(rs []*Resource) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
}

// find returns the resource named name in a sorted list, or nil.
func find(rs []*Resource, name string) *Resource {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Name >= name })
	if i < len(rs) && rs[i].Name == name {
		return rs[i]
	}
	return nil
}
