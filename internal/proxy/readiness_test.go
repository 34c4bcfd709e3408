package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
)

const readyNode = "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local"

// xdsServer is a go-control-plane ADS server whose snapshot tests set.
type xdsServer struct {
	cache   cachev3.SnapshotCache
	addr    string
	version int
}

func startXDS(t *testing.T) *xdsServer {
	t.Helper()
	s := &xdsServer{cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), s.cache, nil))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	s.addr = ln.Addr().String()
	return s
}

func (s *xdsServer) set(t *testing.T, res map[resource.Type][]types.Resource) {
	t.Helper()
	s.version++
	snap, err := cachev3.NewSnapshot(strconv.Itoa(s.version), res)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), readyNode, snap); err != nil {
		t.Fatal(err)
	}
}

// runXDSProxy runs a proxy fed by s and returns it with its
// /healthz/ready URL.
func runXDSProxy(t *testing.T, s *xdsServer, fetchTimeout time.Duration) (*Proxy, string) {
	t.Helper()
	bs, err := bootstrap.FromFlags(bootstrap.Options{NodeID: readyNode, Namespace: "shop", XDSAddress: s.addr, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	readyAddr := freeTestAddr(t)
	o := Options{Log: io.Discard, DrainDuration: 50 * time.Millisecond, ReadyAddress: readyAddr, InitialFetchTimeout: fetchTimeout}
	p, err := New(bs, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, o) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, "http://" + readyAddr + "/healthz/ready"
}

func freeTestAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readyCode(url string) int {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// routeTo is route configuration name routing everything to cluster.
func routeTo(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: name,
			EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

func assignment(name, addr string) *endpointv3.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)}}}},
		}}}},
	}}}
}

// staysNotReady checks for a while that the proxy is not ready.
func staysNotReady(t *testing.T, url, why string) {
	t.Helper()
	for end := time.Now().Add(700 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if code := readyCode(url); code != http.StatusServiceUnavailable {
			t.Fatalf("%s: /healthz/ready answers %d, want 503", why, code)
		}
	}
}

func becomesReady(t *testing.T, url, why string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); readyCode(url) != http.StatusOK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: /healthz/ready never answered 200", why)
		}
	}
}

// TestReadyWaitsForTheClustersRoutesName: /healthz/ready turns 200 only
// once the listeners, their routes and the clusters those routes name
// (with their EDS endpoints) have all arrived, so a pod never gets traffic
// its proxy would answer 503 NR/NC/UH.
func TestReadyWaitsForTheClustersRoutesName(t *testing.T) {
	be := backend(t, nameHandler("reviews"))
	s := startXDS(t)
	var listener types.Resource
	for _, a := range rdsListener(t, "outbound", "reviews-route") {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		listener = m
	}
	static := &clusterv3.Cluster{Name: "BlackHoleCluster", ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	// Listener and route, but the route's cluster is not in CDS yet.
	s.set(t, map[resource.Type][]types.Resource{
		resource.ClusterType:  {static},
		resource.ListenerType: {listener},
		resource.RouteType:    {routeTo("reviews-route", "reviews")},
	})
	p, ready := runXDSProxy(t, s, time.Hour)
	for end := time.Now().Add(20 * time.Second); p.Listeners.BoundAddr("outbound") == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the listener was never bound")
		}
	}
	staysNotReady(t, ready, "route names a cluster CDS has not sent")

	// The cluster arrives, its endpoints not yet.
	s.set(t, map[resource.Type][]types.Resource{
		resource.ClusterType:  {static, edsCluster("reviews")},
		resource.ListenerType: {listener},
		resource.RouteType:    {routeTo("reviews-route", "reviews")},
	})
	for end := time.Now().Add(20 * time.Second); p.Clusters.Get("reviews") == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the cluster never arrived")
		}
	}
	staysNotReady(t, ready, "the route's EDS cluster has no endpoints yet")

	s.set(t, map[resource.Type][]types.Resource{
		resource.ClusterType:  {static, edsCluster("reviews")},
		resource.EndpointType: {assignment("reviews", be)},
		resource.ListenerType: {listener},
		resource.RouteType:    {routeTo("reviews-route", "reviews")},
	})
	becomesReady(t, ready, "after the endpoints arrived")
	resp, err := client().Get("http://" + p.Listeners.BoundAddr("outbound") + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "reviews" {
		t.Errorf("once ready: got %d %q, want 200 reviews", resp.StatusCode, b)
	}
}

// TestReadyAfterInitialFetchTimeout: a cluster that never arrives holds
// readiness only for the initial fetch timeout, as in Envoy.
func TestReadyAfterInitialFetchTimeout(t *testing.T) {
	s := startXDS(t)
	var listener types.Resource
	for _, a := range rdsListener(t, "outbound", "r") {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		listener = m
	}
	s.set(t, map[resource.Type][]types.Resource{
		resource.ClusterType:  {edsCluster("other")},
		resource.EndpointType: {assignment("other", "127.0.0.1:1")},
		resource.ListenerType: {listener},
		resource.RouteType:    {routeTo("r", "never-sent")},
	})
	const timeout = 3 * time.Second
	p, ready := runXDSProxy(t, s, timeout)
	for end := time.Now().Add(20 * time.Second); p.Listeners.BoundAddr("outbound") == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the listener was never bound")
		}
	}
	if code := readyCode(ready); code != http.StatusServiceUnavailable {
		t.Fatalf("right after the listener is bound: /healthz/ready %d, want 503 (cluster never-sent is missing)", code)
	}
	becomesReady(t, ready, "after the initial fetch timeout")
}
