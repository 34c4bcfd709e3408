package fakeproxy

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// envelopeOf is what decodeEnvelope should keep of a full response.
func envelopeOf(full *discoveryv3.DeltaDiscoveryResponse, bodies bool) *discoveryv3.DeltaDiscoveryResponse {
	out := &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: full.SystemVersionInfo, TypeUrl: full.TypeUrl,
		Nonce: full.Nonce, RemovedResources: full.RemovedResources}
	for _, r := range full.Resources {
		e := &discoveryv3.Resource{Name: r.Name, Version: r.Version}
		if bodies {
			e.Resource = r.Resource
		}
		out.Resources = append(out.Resources, e)
	}
	return out
}

func TestDecodeEnvelope(t *testing.T) {
	route := mustAny(t, &routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{{Name: "a", Domains: []string{"a"}}}})
	cluster := mustAny(t, &clusterv3.Cluster{Name: "outbound|80||a", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}})
	tests := []struct {
		name       string
		resp       *discoveryv3.DeltaDiscoveryResponse
		keepAll    bool
		wantBodies bool
	}{
		{name: "routes skip bodies", resp: &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "7", TypeUrl: resourcev3.RouteType, Nonce: "7-abc",
			Resources:        []*discoveryv3.Resource{{Name: "80", Version: "v1", Resource: route, Aliases: []string{"x"}, Ttl: durationpb.New(5)}},
			RemovedResources: []string{"81", "82"}}},
		{name: "routes kept with keepAll", keepAll: true, wantBodies: true, resp: &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "7",
			TypeUrl: resourcev3.RouteType, Nonce: "n", Resources: []*discoveryv3.Resource{{Name: "80", Version: "v1", Resource: route}}}},
		{name: "clusters keep bodies", wantBodies: true, resp: &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "1", TypeUrl: resourcev3.ClusterType,
			Nonce: "n1", ControlPlane: &corev3.ControlPlane{Identifier: "trellisd"},
			Resources:            []*discoveryv3.Resource{{Name: "outbound|80||a", Version: "v", Resource: cluster}, {Name: "b", Version: "w", Resource: cluster}},
			RemovedResourceNames: []*discoveryv3.ResourceName{{Name: "gone"}}}},
		{name: "removals only", resp: &discoveryv3.DeltaDiscoveryResponse{TypeUrl: resourcev3.EndpointType, Nonce: "n2", RemovedResources: []string{"a"}}},
		{name: "empty", resp: &discoveryv3.DeltaDiscoveryResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			got := &discoveryv3.DeltaDiscoveryResponse{Nonce: "stale"}
			if err := decodeEnvelope(b, got, tt.keepAll); err != nil {
				t.Fatalf("decodeEnvelope: %v", err)
			}
			if want := envelopeOf(tt.resp, tt.wantBodies); !proto.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestDecodeEnvelopeRejectsMalformed(t *testing.T) {
	b, err := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: resourcev3.ClusterType, Nonce: "n",
		Resources: []*discoveryv3.Resource{{Name: "a", Version: "v", Resource: &anypb.Any{TypeUrl: "t", Value: []byte("xyz")}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 5, len(b) - 1} {
		if err := decodeEnvelope(b[:cut], &discoveryv3.DeltaDiscoveryResponse{}, true); err == nil {
			t.Errorf("decodeEnvelope of %d of %d bytes: got no error, want one", cut, len(b))
		}
	}
}

// FuzzDecodeEnvelope checks that the envelope decoder never panics and,
// whenever the full decoder accepts the bytes, agrees with it.
func FuzzDecodeEnvelope(f *testing.F) {
	seed, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "3", TypeUrl: resourcev3.ListenerType, Nonce: "n",
		Resources:        []*discoveryv3.Resource{{Name: "l", Version: "v", Resource: &anypb.Any{TypeUrl: "t", Value: []byte{8, 1}}}},
		RemovedResources: []string{"x"}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := &discoveryv3.DeltaDiscoveryResponse{}
		err := decodeEnvelope(b, got, true)
		full := &discoveryv3.DeltaDiscoveryResponse{}
		if proto.Unmarshal(b, full) != nil {
			return
		}
		if err != nil {
			t.Fatalf("decodeEnvelope failed where proto.Unmarshal did not: %v", err)
		}
		want := envelopeOf(full, true)
		for _, r := range want.Resources {
			if r.Resource != nil { // compare only the fields an envelope keeps
				r.Resource = &anypb.Any{TypeUrl: r.Resource.TypeUrl, Value: r.Resource.Value}
			}
		}
		if !proto.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}
