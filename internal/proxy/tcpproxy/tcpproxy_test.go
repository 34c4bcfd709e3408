package tcpproxy

import (
	"strings"
	"testing"

	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestWeightedPick(t *testing.T) {
	c, err := Compile(&tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{
		Clusters: []*tcpv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "primary", Weight: 3}, {Name: "burst", Weight: 1}},
	}}}, nil, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for r := uint64(0); r < 400; r++ {
		got[c.pick(r)]++
	}
	if got["primary"] != 300 || got["burst"] != 100 {
		t.Errorf("got %v, want primary:300 burst:100", got)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		p    *tcpv3.TcpProxy
		want string
	}{
		{name: "no cluster", p: &tcpv3.TcpProxy{}, want: "tcp: set cluster or weighted_clusters"},
		{name: "zero weights", p: &tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{
			Clusters: []*tcpv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "a"}}}}}, want: "weights sum to 0"},
		{name: "zero connect attempts", p: &tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "a"}, MaxConnectAttempts: wrapperspb.UInt32(0)}, want: "max_connect_attempts: must be at least 1"},
		{name: "tunneling", p: &tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "a"}, TunnelingConfig: &tcpv3.TcpProxy_TunnelingConfig{Hostname: "x"}}, want: "tunneling_config: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.p, nil, "tcp")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
