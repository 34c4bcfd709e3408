package server

import (
	"context"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Streams that end leave no goroutines behind, whether the client closes
// cleanly or the server rejects the stream.
func TestNoGoroutineLeak(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{resourcev3.ClusterType: {res(t, "a", "1")}}))
	h := start(t, gen)
	// Warm the client connection so its own goroutines are in the baseline.
	warm := h.delta(t)
	warm.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "warm"}, TypeUrl: resourcev3.ClusterType})
	if _, err := warm.Recv(); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "p"}, TypeUrl: resourcev3.ClusterType}
		if i%2 == 1 {
			req.Node = nil // rejected: no node
		}
		st.Send(req)
		st.Recv()
		st.CloseSend()
		cancel()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base && h.srv.Connected() == 1 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: got %d, want <= %d (connected %d)\n%s", n, base, h.srv.Connected(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
