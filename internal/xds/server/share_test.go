package server

import (
	"context"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
)

// Streams that subscribe to the same names share one name set, and streams
// that get the same change get the same (once-marshalled) response.
func TestStreamsShareSubscriptionsAndResponses(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{
		resourcev3.EndpointType: {res(t, "a", "1"), res(t, "b", "1"), res(t, "c", "1")},
	}))
	h := start(t, gen)
	var streams []discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	var nonces []string
	for i, sub := range [][]string{{"a", "b"}, {"b", "a"}, {"a", "b", "c"}} {
		st := h.delta(t)
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "p" + string(rune('0'+i))},
			TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: sub}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.Nonce}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
		nonces = append(nonces, r.Nonce)
	}
	if got, want := h.srv.sets.count(), 2; got != want {
		t.Errorf("distinct name sets: got %d, want %d ({a,b} shared, {a,b,c})", got, want)
	}
	if nonces[0] != nonces[1] || nonces[0] == nonces[2] {
		t.Errorf("initial nonces: got %v, want the first two equal (same content) and the third different", nonces)
	}

	gen.snap.Store(snapshot("v2", map[string][]*Resource{
		resourcev3.EndpointType: {res(t, "a", "2"), res(t, "b", "1"), res(t, "c", "1")},
	}))
	h.srv.Push(Push{})
	var got []string
	for _, st := range streams {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if names(r.Resources) != "a" {
			t.Errorf("push: got %s, want a", names(r.Resources))
		}
		got = append(got, r.Nonce)
	}
	if got[0] != got[1] || got[1] != got[2] {
		t.Errorf("push nonces: got %v, want one shared response", got)
	}

	// Unsubscribing moves a stream to another set; closing releases them.
	if err := streams[2].Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{"c"}}); err != nil {
		t.Fatal(err)
	}
	waitSets := func(want int) {
		t.Helper()
		waitStatus(t, h.srv, func([]ProxyStatus) bool { return h.srv.sets.count() == want })
	}
	waitSets(1)
	for _, st := range streams {
		st.CloseSend()
	}
	waitStatus(t, h.srv, func(s []ProxyStatus) bool { return len(s) == 0 })
	waitSets(0)
}

// A client that compresses gets compressed responses; it must not hand them
// to streams that don't.
func TestCompressingClientDoesNotShare(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{resourcev3.ClusterType: {res(t, "a", strings.Repeat("x", 4096))}}))
	h := start(t, gen)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn)
	for i, opts := range [][]grpc.CallOption{{grpc.UseCompressor(gzip.Name)}, nil, {grpc.UseCompressor(gzip.Name)}} {
		st, err := client.DeltaAggregatedResources(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "p" + strconv.Itoa(i)}, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("stream %d (compressing %v): %v", i, opts != nil, err)
		}
		if names(r.Resources) != "a" {
			t.Errorf("stream %d: got %s, want a", i, names(r.Resources))
		}
	}
}

// A Delta and a State-of-the-World stream sent the same content get the
// same nonce but not the same encoded message: each decodes as its own kind.
func TestDeltaAndSotWDoNotShareEncodings(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{
		resourcev3.EndpointType: {res(t, "a", "1")},
	}))
	h := start(t, gen)
	d := h.delta(t)
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "d"}, TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	dr, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	s := h.sotw(t)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "s"}, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	sr, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if names(dr.Resources) != "a" || dr.SystemVersionInfo != "v1" {
		t.Errorf("Delta: got +%s version %q, want +a v1", names(dr.Resources), dr.SystemVersionInfo)
	}
	if sr.VersionInfo != "v1" || len(sr.Resources) != 1 || sr.Resources[0].TypeUrl != resourcev3.ClusterType {
		t.Errorf("SotW: got version %q, %d resources %v; want v1 and one cluster-typed resource", sr.VersionInfo, len(sr.Resources), sr.Resources)
	}
}
