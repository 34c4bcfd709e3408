package server

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

func TestNewResource(t *testing.T) {
	c := &clusterv3.Cluster{Name: "outbound|80||a", AltStatName: "x"}
	r, err := NewResource(c.Name, c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Any.TypeUrl != resourcev3.ClusterType {
		t.Errorf("type URL: got %s, want %s", r.Any.TypeUrl, resourcev3.ClusterType)
	}
	var back clusterv3.Cluster
	if err := r.Any.UnmarshalTo(&back); err != nil || !proto.Equal(&back, c) {
		t.Errorf("round trip: got %v (%v), want %v", &back, err, c)
	}
	same, _ := NewResource(c.Name, proto.Clone(c))
	other, _ := NewResource(c.Name, &clusterv3.Cluster{Name: c.Name, AltStatName: "y"})
	if same.Version != r.Version || other.Version == r.Version {
		t.Errorf("versions: got %s, %s (equal content), %s (other content), want the first two equal and the third different", r.Version, same.Version, other.Version)
	}
}

// An endpoint or route watch whose subscription is empty (a SotW request
// naming nothing, or every name unsubscribed) wants nothing: selecting and
// diffing over a non-empty snapshot must not touch its absent name set.
func TestEmptySubscriptionWantsNothing(t *testing.T) {
	var sets setTable
	list := []*Resource{{Name: "a", Version: "1"}, {Name: "b", Version: "1"}}
	next := []*Resource{{Name: "a", Version: "2"}, {Name: "c", Version: "1"}}
	for _, typ := range []string{resourcev3.EndpointType, resourcev3.RouteType} {
		w := newWatch(typ)
		w.setNames(&sets, nil)
		if w.wildcard {
			t.Fatalf("%s: an empty subscription became a wildcard", typ)
		}
		if got := w.selected(list); len(got) != 0 {
			t.Errorf("%s: selected %d resources, want none", typ, len(got))
		}
		if ch, rm := w.diff(list, next); len(ch)+len(rm) != 0 {
			t.Errorf("%s: diff gave %d changed, %d removed; want none", typ, len(ch), len(rm))
		}
		w.update(&sets, nil, []string{"a"})
		if got := w.selected(list); len(got) != 0 {
			t.Errorf("%s: after unsubscribing: selected %d, want none", typ, len(got))
		}
	}
}
