package proxy

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestXDSUpdateCountersOnStats: the xDS client counts into the proxy's
// stats store, so /stats shows Envoy's control_plane.connected_state and
// the per-type update_success counters, and each pushed change adds one.
func TestXDSUpdateCountersOnStats(t *testing.T) {
	s := startXDS(t)
	static := func(name string) types.Resource {
		return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	}
	s.set(t, map[resource.Type][]types.Resource{resource.ClusterType: {static("BlackHoleCluster")}})
	p, ready := runXDSProxy(t, s, time.Hour)
	becomesReady(t, ready, "with one static cluster")
	waitCounter := func(name string, atLeast uint64) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); p.Stats.CounterValue(name) < atLeast; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s is %d, want at least %d", name, p.Stats.CounterValue(name), atLeast)
			}
		}
	}
	waitCounter("cluster_manager.cds.update_success", 1)
	n := p.Stats.CounterValue("cluster_manager.cds.update_success")
	s.set(t, map[resource.Type][]types.Resource{resource.ClusterType: {static("BlackHoleCluster"), static("PassthroughCluster")}})
	waitCounter("cluster_manager.cds.update_success", n+1)
	if g := p.Stats.Get("control_plane.connected_state"); g == nil || g.Gauge == nil || g.Gauge.Value() != 1 {
		t.Errorf("control_plane.connected_state: got %v, want the gauge at 1", g)
	}
	if r := p.Stats.CounterValue("cluster_manager.cds.update_rejected"); r != 0 {
		t.Errorf("cluster_manager.cds.update_rejected: %d, want 0", r)
	}
}
