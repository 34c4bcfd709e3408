package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(2 * time.Second),
	}
}

func socket(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func lbEndpoint(addr string, port uint32, md *corev3.Metadata) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(addr, port)}},
		Metadata:       md,
	}
}

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func istioMeta(t *testing.T, fields map[string]any) *corev3.Metadata {
	t.Helper()
	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": s}}
}

func staticCluster(name string, eps ...*endpointv3.LbEndpoint) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       cla(name, eps...),
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *clusterv3.Cluster)
		wantErr string
	}{
		{"empty name", func(c *clusterv3.Cluster) { c.Name = "" }, "name: must not be empty"},
		{"eds without config", func(c *clusterv3.Cluster) { c.EdsClusterConfig = nil }, "eds_cluster_config: is required"},
		{"negative connect timeout", func(c *clusterv3.Cluster) { c.ConnectTimeout = durationpb.New(-time.Second) }, "connect_timeout: must not be negative"},
		{"cluster provided on eds", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED }, "lb_policy: CLUSTER_PROVIDED is only valid"},
		{"least request choice count", func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(1)}}
		}, "least_request_lb_config.choice_count: must be at least 2"},
		{"maglev table not prime", func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(1000)}}
		}, "maglev_lb_config.table_size: must be a prime"},
		{"tls transport socket", func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls"}
		}, "transport_socket.typed_config: must be an envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"},
		{"alts transport socket", func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}
		}, `transport socket "envoy.transport_sockets.alts" is not supported`},
		{"outlier percent", func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(150)}
		}, "outlier_detection.max_ejection_percent: must be a percentage"},
		{"unknown protocol options", func(c *clusterv3.Cluster) {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"x.y": {}}
		}, `typed_extension_protocol_options["x.y"]: unsupported`},
		{"grpc health check", func(c *clusterv3.Cluster) {
			c.HealthChecks = []*corev3.HealthCheck{{Interval: durationpb.New(time.Second), Timeout: durationpb.New(time.Second),
				HealthChecker: &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}}}}
		}, "health_checks[0]: only http_health_check and tcp_health_check"},
		{"panic threshold range", func(c *clusterv3.Cluster) {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 120}}
		}, "common_lb_config.healthy_panic_threshold: must be within [0, 100]"},
		{"static with host name", func(c *clusterv3.Cluster) {
			*c = *staticCluster("s", lbEndpoint("example.com", 80, nil))
		}, `is not an IP address`},
		{"static port zero", func(c *clusterv3.Cluster) {
			*c = *staticCluster("s", lbEndpoint("10.0.0.1", 0, nil))
		}, "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: must be within [1, 65535]"},
		{"strict dns without endpoints", func(c *clusterv3.Cluster) {
			*c = clusterv3.Cluster{Name: "d", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}}
		}, "load_assignment: is required for type STRICT_DNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := edsCluster("outbound|80||a.default.svc.cluster.local")
			tt.mutate(c)
			_, err := Compile(c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompileFields(t *testing.T) {
	h2, _ := anypb.New(&httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(90 * time.Second), MaxRequestsPerConnection: wrapperspb.UInt32(7)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}},
	})
	c := edsCluster("outbound|9080|v1|reviews.default.svc.cluster.local")
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: h2}
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: wrapperspb.UInt32(10), MaxPendingRequests: wrapperspb.UInt32(5), MaxRequests: wrapperspb.UInt32(20), MaxRetries: wrapperspb.UInt32(2)}}}
	c.Metadata = istioMeta(t, map[string]any{"services": []any{map[string]any{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}}, "subset": "v1"})
	got, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"HTTP2", got.HTTP2, true},
		{"IdleTimeout", got.IdleTimeout, 90 * time.Second},
		{"MaxRequestsPerConnection", got.MaxRequestsPerConnection, uint32(7)},
		{"ConnectTimeout", got.ConnectTimeout, 2 * time.Second},
		{"Policy", got.LB.Policy, lb.LeastRequest},
		{"Breakers", got.Breakers, Thresholds{10, 5, 20, 2}},
		{"Service.Host", got.Service.Host, "reviews.default.svc.cluster.local"},
		{"Service.Name", got.Service.Name, "reviews"},
		{"Subset", got.Subset, "v1"},
		{"Type", got.Type, TypeEDS},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	pass := &clusterv3.Cluster{Name: "InboundPassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:           clusterv3.Cluster_CLUSTER_PROVIDED,
		UpstreamBindConfig: &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: "127.0.0.6", PortSpecifier: &corev3.SocketAddress_PortValue{}}}}
	pc, err := Compile(pass)
	if err != nil {
		t.Fatal(err)
	}
	if !pc.OriginalDst || pc.UpstreamBindSource != "127.0.0.6" {
		t.Errorf("got OriginalDst %v bind %q, want true and 127.0.0.6", pc.OriginalDst, pc.UpstreamBindSource)
	}
}

func TestEDSWarmingAndPick(t *testing.T) {
	m := NewManager(Options{Rand: func() uint64 { return 0 }})
	defer m.Close()
	name := "outbound|80||web.default.svc.cluster.local"
	if err := m.UpdateClusters([]*clusterv3.Cluster{edsCluster(name)}); err != nil {
		t.Fatal(err)
	}
	c := m.Get(name)
	if c == nil || c.Warm() || m.Warm() {
		t.Fatalf("got cluster %v warm=%v, want a cold cluster", c, c != nil && c.Warm())
	}
	if _, err := c.Pick(nil); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Fatalf("got %v, want ErrNoHealthyUpstream before endpoints", err)
	}
	if got := m.EDSServiceNames(); len(got) != 1 || got[0] != name {
		t.Errorf("got EDS names %v, want [%s]", got, name)
	}
	md := istioMeta(t, map[string]any{"workload": "web-v1;default;web;v1;Kubernetes", "service_account": "web"})
	if err := m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{cla(name, lbEndpoint("10.1.0.1", 8080, md), lbEndpoint("10.1.0.2", 8080, nil))}); err != nil {
		t.Fatal(err)
	}
	if !c.Warm() || !m.Warm() {
		t.Fatalf("got cold after endpoints, want warm")
	}
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		h, err := c.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Address]++
	}
	if seen["10.1.0.1:8080"] != 5 || seen["10.1.0.2:8080"] != 5 {
		t.Errorf("got picks %v, want 5 each", seen)
	}
	for _, h := range c.Hosts() {
		if h.Address == "10.1.0.1:8080" {
			if h.Peer == nil || h.Peer.Workload != "web-v1" || h.Peer.Version != "v1" || h.Peer.Cluster != "Kubernetes" || h.Peer.CanonicalService != "web" {
				t.Errorf("got peer %+v, want web-v1/default/web/v1/Kubernetes", h.Peer)
			}
			if h.ServiceAccount != "web" {
				t.Errorf("got service account %q, want web", h.ServiceAccount)
			}
		}
	}
	// An EDS update keeps unchanged hosts (and their state).
	before := c.Hosts()
	if err := m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{cla(name, lbEndpoint("10.1.0.1", 8080, md), lbEndpoint("10.1.0.3", 8080, nil))}); err != nil {
		t.Fatal(err)
	}
	after := c.Hosts()
	if after[0] != before[0] {
		t.Errorf("got a new Host for an unchanged endpoint, want the same one")
	}
	// Removing the assignment empties the cluster.
	if err := m.UpdateEndpoints(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pick(nil); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("got %v after removal, want ErrNoHealthyUpstream", err)
	}
}

func TestRejectedUpdateKeepsLastGood(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	good := staticCluster("good", lbEndpoint("127.0.0.1", 9000, nil))
	if err := m.UpdateClusters([]*clusterv3.Cluster{good}); err != nil {
		t.Fatal(err)
	}
	c := m.Get("good")
	bad := edsCluster("bad")
	bad.LbPolicy = clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG
	err := m.UpdateClusters([]*clusterv3.Cluster{good, bad})
	if err == nil || !strings.Contains(err.Error(), `clusters[1] ("bad").lb_policy`) {
		t.Fatalf("got %v, want an error naming clusters[1] (\"bad\").lb_policy", err)
	}
	if m.Get("bad") != nil || m.Get("good") != c {
		t.Errorf("got a changed cluster set after a rejected update, want the last good one")
	}
	// Same proto again: same compiled cluster (state kept).
	if err := m.UpdateClusters([]*clusterv3.Cluster{proto.Clone(good).(*clusterv3.Cluster)}); err != nil {
		t.Fatal(err)
	}
	if m.Get("good") != c {
		t.Errorf("got a recompiled cluster for an unchanged proto, want the same pointer")
	}
	dup := m.UpdateClusters([]*clusterv3.Cluster{good, good})
	if dup == nil || !strings.Contains(dup.Error(), "duplicate cluster name") {
		t.Errorf("got %v, want a duplicate name error", dup)
	}
	badEDS := m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{cla("x", lbEndpoint("not-an-ip", 80, nil))})
	if badEDS == nil || !strings.Contains(badEDS.Error(), "is not an IP address") {
		t.Errorf("got %v, want an endpoint address error", badEDS)
	}
}

func TestStaticClustersSurviveCDS(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	if err := m.AddStatic([]*clusterv3.Cluster{staticCluster("xds-grpc", lbEndpoint("127.0.0.1", 15010, nil))}); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateClusters(nil); err != nil {
		t.Fatal(err)
	}
	if m.Get("xds-grpc") == nil || !m.IsStatic("xds-grpc") {
		t.Errorf("got static cluster removed by CDS, want it kept")
	}
	if err := m.UpdateClusters([]*clusterv3.Cluster{staticCluster("xds-grpc", lbEndpoint("127.0.0.1", 1, nil))}); err == nil {
		t.Errorf("got nil, want an error for a CDS cluster shadowing a static one")
	}
}

func TestCircuitBreakers(t *testing.T) {
	store := stats.NewStore()
	m := NewManager(Options{Stats: store})
	defer m.Close()
	c := staticCluster("cb", lbEndpoint("127.0.0.1", 80, nil))
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRequests: wrapperspb.UInt32(2), MaxPendingRequests: wrapperspb.UInt32(1), MaxRetries: wrapperspb.UInt32(1), MaxConnections: wrapperspb.UInt32(1)}}}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	cl := m.Get("cb")
	r1, ok1 := cl.TryRequest()
	_, ok2 := cl.TryRequest()
	_, ok3 := cl.TryRequest()
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("got %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if got := store.CounterValue("cluster.cb.upstream_rq_pending_overflow"); got != 1 {
		t.Errorf("got upstream_rq_pending_overflow %d, want 1", got)
	}
	r1()
	if _, ok := cl.TryRequest(); !ok {
		t.Errorf("got overflow after a release, want a slot")
	}
	rr, ok := cl.TryRetry()
	if _, again := cl.TryRetry(); !ok || again {
		t.Errorf("got retry slots %v %v, want true false", ok, again)
	}
	rr()
	if got := store.CounterValue("cluster.cb.upstream_rq_retry_overflow"); got != 1 {
		t.Errorf("got upstream_rq_retry_overflow %d, want 1", got)
	}
	if got := store.CounterValue("cluster.cb.upstream_rq_retry"); got != 1 {
		t.Errorf("got upstream_rq_retry %d, want 1", got)
	}
	if _, ok := cl.TryConnection(); !ok {
		t.Errorf("got no connection slot, want one")
	}
	if _, ok := cl.TryConnection(); ok {
		t.Errorf("got a second connection slot, want overflow")
	}
	if got := store.CounterValue("cluster.cb.upstream_cx_overflow"); got != 1 {
		t.Errorf("got upstream_cx_overflow %d, want 1", got)
	}
}

func TestReportEjectsAndStats(t *testing.T) {
	store := stats.NewStore()
	m := NewManager(Options{Stats: store, Rand: func() uint64 { return 0 }})
	defer m.Close()
	c := staticCluster("od", lbEndpoint("10.0.0.1", 80, nil), lbEndpoint("10.0.0.2", 80, nil))
	c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), MaxEjectionPercent: wrapperspb.UInt32(100),
		Interval: durationpb.New(time.Hour), BaseEjectionTime: durationpb.New(time.Hour)}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	cl := m.Get("od")
	var bad *Host
	for _, h := range cl.Hosts() {
		if h.Address == "10.0.0.1:80" {
			bad = h
		}
	}
	for i := 0; i < 3; i++ {
		cl.Report(bad, Outcome{Status: 503, Duration: 3 * time.Millisecond})
	}
	if got := store.Get("cluster.od.upstream_rq_time").Histogram.Snapshot(); got.Count != 3 || got.Sum != 9 {
		t.Errorf("got upstream_rq_time count %d sum %v, want 3 and 9", got.Count, got.Sum)
	}
	cl.Report(bad, Outcome{ConnectFailure: true})
	for i := 0; i < 10; i++ {
		h, err := cl.Pick(nil)
		if err != nil || h == bad {
			t.Fatalf("pick %d: got %v %v, want the healthy host", i, h, err)
		}
	}
	want := map[string]uint64{
		"cluster.od.upstream_rq_total":        4,
		"cluster.od.upstream_rq_503":          3,
		"cluster.od.upstream_rq_5xx":          3,
		"cluster.od.upstream_cx_connect_fail": 1,
	}
	for name, w := range want {
		if got := store.CounterValue(name); got != w {
			t.Errorf("%s: got %d, want %d", name, got, w)
		}
	}
	if got := store.Get("cluster.od.outlier_detection.ejections_active").Gauge.Value(); got != 1 {
		t.Errorf("got ejections_active %d, want 1", got)
	}
	if got := bad.HealthFlags(); got != "/failed_outlier_check" {
		t.Errorf("got health flags %q, want /failed_outlier_check", got)
	}
	good := cl.Hosts()[1]
	if n := testing.AllocsPerRun(1000, func() { cl.Report(good, Outcome{Status: 200}) }); n != 0 {
		t.Errorf("got %v allocations per Report, want 0", n)
	}
	ctx := &lb.Context{}
	if n := testing.AllocsPerRun(1000, func() {
		rel, _ := cl.TryRequest()
		m.Get("od").Pick(ctx)
		rel()
	}); n != 0 {
		t.Errorf("got %v allocations per Get+TryRequest+Pick, want 0", n)
	}
}

func TestLocalityWeightedCluster(t *testing.T) {
	m := NewManager(Options{Rand: func() uint64 { return 1 << 62 }})
	defer m.Close()
	c := edsCluster("lw")
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
		LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	if !m.Get("lw").LB.LocalityWeighted {
		t.Fatalf("got LocalityWeighted false, want true")
	}
	assignment := &endpointv3.ClusterLoadAssignment{ClusterName: "lw", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{Locality: &corev3.Locality{Zone: "a"}, LoadBalancingWeight: wrapperspb.UInt32(0), LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("10.0.0.1", 80, nil)}},
		{Locality: &corev3.Locality{Zone: "b"}, LoadBalancingWeight: wrapperspb.UInt32(5), LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("10.0.0.2", 80, nil)}},
	}}
	if err := m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{assignment}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		h, err := m.Get("lw").Pick(nil)
		if err != nil || h.Address != "10.0.0.2:80" {
			t.Fatalf("got %v %v, want only the weighted locality's host", h, err)
		}
	}
}

func TestStrictDNS(t *testing.T) {
	var calls int
	m := NewManager(Options{Resolver: func(_ context.Context, host string) ([]netip.Addr, error) {
		calls++
		if host != "db.example.com" {
			return nil, fmt.Errorf("no such host %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}, nil
	}})
	defer m.Close()
	c := &clusterv3.Cluster{Name: "outbound|5432||db.example.com", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsRefreshRate: durationpb.New(time.Hour),
		LoadAssignment: cla("outbound|5432||db.example.com", lbEndpoint("db.example.com", 5432, nil))}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range m.Get(c.Name).Hosts() {
		got = append(got, h.Address)
	}
	if strings.Join(got, ",") != "192.0.2.10:5432,192.0.2.11:5432" {
		t.Errorf("got hosts %v, want both resolved addresses on port 5432", got)
	}
	if calls != 1 {
		t.Errorf("got %d resolutions, want 1", calls)
	}
}

func TestOriginalDst(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	c := &clusterv3.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	cl := m.Get("PassthroughCluster")
	h, err := cl.Pick(&lb.Context{OriginalDst: "10.9.9.9:443"})
	if err != nil || h.Address != "10.9.9.9:443" {
		t.Fatalf("got %v %v, want host 10.9.9.9:443", h, err)
	}
	h2, _ := cl.Pick(&lb.Context{OriginalDst: "10.9.9.9:443"})
	if h2 != h {
		t.Errorf("got a new host for the same destination, want the cached one")
	}
	if _, err := cl.Pick(nil); !errors.Is(err, ErrNoOriginalDst) {
		t.Errorf("got %v, want ErrNoOriginalDst", err)
	}
	// Past the bound, idle hosts go and busy ones stay.
	h.StartRequest()
	for i := 0; i < maxOriginalDstHosts+10; i++ {
		cl.Pick(&lb.Context{OriginalDst: fmt.Sprintf("10.%d.%d.%d:80", i>>16&255, i>>8&255, i&255)})
	}
	if n := len(cl.Hosts()); n > maxOriginalDstHosts {
		t.Errorf("got %d original destination hosts, want at most %d", n, maxOriginalDstHosts)
	}
	if again, _ := cl.Pick(&lb.Context{OriginalDst: "10.9.9.9:443"}); again != h {
		t.Errorf("got the busy host evicted, want it kept")
	}
}

func TestApplyAny(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	name := "outbound|80||a.b.svc.cluster.local"
	ca, _ := anypb.New(edsCluster(name))
	if err := m.ApplyClusters(map[string]*anypb.Any{name: ca}); err != nil {
		t.Fatal(err)
	}
	ea, _ := anypb.New(cla(name, lbEndpoint("10.0.0.1", 80, nil)))
	if err := m.ApplyEndpoints(map[string]*anypb.Any{name: ea}); err != nil {
		t.Fatal(err)
	}
	if h, err := m.Get(name).Pick(nil); err != nil || h.Address != "10.0.0.1:80" {
		t.Errorf("got %v %v, want 10.0.0.1:80", h, err)
	}
	if err := m.ApplyClusters(map[string]*anypb.Any{"x": {TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Value: []byte{0xff}}}); err == nil {
		t.Errorf("got nil, want a decode error")
	}
}

func BenchmarkPickReport(b *testing.B) {
	m := NewManager(Options{})
	defer m.Close()
	c := staticCluster("bench", lbEndpoint("10.0.0.1", 80, nil), lbEndpoint("10.0.0.2", 80, nil), lbEndpoint("10.0.0.3", 80, nil))
	c.OutlierDetection = &clusterv3.OutlierDetection{}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cl := m.Get("bench")
			rel, _ := cl.TryRequest()
			h, _ := cl.Pick(nil)
			cl.Report(h, Outcome{Status: 200})
			rel()
		}
	})
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	m := NewManager(Options{Resolver: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}})
	hc := staticCluster("hc", lbEndpoint(host, uint32(p), nil))
	hc.HealthChecks = []*corev3.HealthCheck{{Interval: durationpb.New(time.Hour), Timeout: durationpb.New(time.Second),
		HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: "/"}}}}
	hc.OutlierDetection = &clusterv3.OutlierDetection{}
	dns := &clusterv3.Cluster{Name: "dns", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LoadAssignment: cla("dns", lbEndpoint("local.test", 80, nil))}
	if err := m.UpdateClusters([]*clusterv3.Cluster{hc, dns}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("got %d goroutines after Close, want at most %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestConcurrentUpdatesAndPicks runs the data path against EDS updates and
// ejections at once (meant for -race).
func TestConcurrentUpdatesAndPicks(t *testing.T) {
	m := NewManager(Options{})
	defer m.Close()
	c := edsCluster("busy")
	c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(2), MaxEjectionPercent: wrapperspb.UInt32(50)}
	if err := m.UpdateClusters([]*clusterv3.Cluster{c}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := &lb.Context{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				cl := m.Get("busy")
				rel, ok := cl.TryRequest()
				if !ok {
					continue
				}
				if h, err := cl.Pick(ctx); err == nil {
					status := 200
					if h.Address == "10.0.0.1:80" {
						status = 503
					}
					cl.Report(h, Outcome{Status: status})
				}
				rel()
			}
		}()
	}
	for i := 0; i < 200; i++ {
		eps := []*endpointv3.LbEndpoint{lbEndpoint("10.0.0.1", 80, nil), lbEndpoint("10.0.0.2", 80, nil)}
		if i%2 == 0 {
			eps = append(eps, lbEndpoint("10.0.0.3", 80, nil))
		}
		if err := m.UpdateEndpoints([]*endpointv3.ClusterLoadAssignment{cla("busy", eps...)}); err != nil {
			t.Fatal(err)
		}
		m.Get("busy").Outlier().Sweep()
	}
	close(stop)
	wg.Wait()
}

func noDNS(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("test: no DNS")
}

// BenchmarkUpdate1000 applies a CDS+EDS update of 1000 clusters (2
// endpoints each) where every cluster changed: the cost of a full push.
func BenchmarkUpdate1000(b *testing.B) {
	mk := func(gen int) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
		var cs []*clusterv3.Cluster
		var es []*endpointv3.ClusterLoadAssignment
		for i := 0; i < 1000; i++ {
			n := fmt.Sprintf("outbound|80||svc%d.default.svc.cluster.local", i)
			c := edsCluster(n)
			c.ConnectTimeout = durationpb.New(time.Duration(gen%2+1) * time.Second)
			cs = append(cs, c)
			es = append(es, cla(n, lbEndpoint(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), 80, nil), lbEndpoint(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 80, nil)))
		}
		return cs, es
	}
	m := NewManager(Options{})
	defer m.Close()
	sets := [2][]*clusterv3.Cluster{}
	var es []*endpointv3.ClusterLoadAssignment
	sets[0], es = mk(0)
	sets[1], _ = mk(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.UpdateClusters(sets[i%2]); err != nil {
			b.Fatal(err)
		}
		if err := m.UpdateEndpoints(es); err != nil {
			b.Fatal(err)
		}
	}
}
