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
