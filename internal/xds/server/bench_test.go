package server

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// BenchmarkPushDelta measures one push of a changed 100 KB resource (plus
// 1,000 unchanged ones) to 200 Delta streams over loopback, until every
// stream has received it and ACKed.
//
//	go test -run '^$' -bench PushDelta ./internal/xds/server/
func BenchmarkPushDelta(b *testing.B) {
	const streams, others = 200, 1000
	big := strings.Repeat("r", 100<<10)
	gen := &fakeGen{}
	var rest []*Resource
	for i := 0; i < others; i++ {
		rest = append(rest, res(b, "c"+strconv.Itoa(i), "same"))
	}
	mk := func(v int) *Snapshot {
		list := append([]*Resource{res(b, "route", big+strconv.Itoa(v))}, rest...)
		return snapshot(strconv.Itoa(v), map[string][]*Resource{resourcev3.ClusterType: list})
	}
	gen.snap.Store(mk(0))
	h := start(b, gen)
	var wg sync.WaitGroup
	acked := make(chan struct{}, streams)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < streams; i++ {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "p" + strconv.Itoa(i)}, TypeUrl: resourcev3.ClusterType}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.Nonce})
				acked <- struct{}{}
			}
		}()
	}
	b.ResetTimer()
	for n := 1; n <= b.N; n++ {
		gen.snap.Store(mk(n))
		h.srv.Push(Push{})
		for i := 0; i < streams; i++ {
			<-acked
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
}
