package cluster

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeCompile feeds arbitrary bytes as CDS and EDS resources: decode
// may fail, compile may reject, but nothing may panic and an accepted
// cluster must serve picks.
func FuzzDecodeCompile(f *testing.F) {
	for _, c := range []*clusterv3.Cluster{edsCluster("a"), staticCluster("s", lbEndpoint("10.0.0.1", 80, nil))} {
		b, _ := proto.Marshal(c)
		f.Add(b, []byte(nil))
	}
	eb, _ := proto.Marshal(cla("a", lbEndpoint("10.0.0.1", 80, nil), lbEndpoint("10.0.0.2", 81, nil)))
	cb, _ := proto.Marshal(edsCluster("a"))
	f.Add(cb, eb)
	f.Fuzz(func(t *testing.T, cdata, edata []byte) {
		var c clusterv3.Cluster
		if proto.Unmarshal(cdata, &c) != nil {
			return
		}
		// Nothing may leave the machine: no DNS, no health check probes.
		c.HealthChecks = nil
		m := NewManager(Options{Resolver: func(context.Context, string) ([]netip.Addr, error) {
			return nil, errors.New("fuzz: no DNS")
		}})
		defer m.Close()
		if m.UpdateClusters([]*clusterv3.Cluster{&c}) != nil {
			if m.Get(c.GetName()) != nil {
				t.Fatalf("got a rejected cluster published")
			}
			return
		}
		var e endpointv3.ClusterLoadAssignment
		if proto.Unmarshal(edata, &e) == nil {
			e.ClusterName = c.GetEdsClusterConfig().GetServiceName()
			if e.ClusterName == "" {
				e.ClusterName = c.GetName()
			}
			m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{&e})
		}
		cl := m.Get(c.GetName())
		for i := 0; i < 3; i++ {
			if h, err := cl.Pick(nil); err == nil && h == nil {
				t.Fatalf("got nil host without error")
			}
		}
	})
}
