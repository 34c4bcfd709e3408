package xdsclient

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

const nodeID = "sidecar~10.0.0.1~web-1.default~default.svc.cluster.local"

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

func assignment(name, ip string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}}}}}}}}}
}

func httpListener(t *testing.T, name, routeName string) *listenerv3.Listener {
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: name, RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{RouteConfigName: routeName, ConfigSource: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: name, FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: hcmName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}}}}}
}

func snapshot(t *testing.T, version string, clusters []string, bad bool) *cachev3.Snapshot {
	t.Helper()
	var cs, es []types.Resource
	for i, c := range clusters {
		cs = append(cs, edsCluster(c))
		es = append(es, assignment(c, fmt.Sprintf("10.0.0.%d", i+1)))
	}
	if bad {
		cs = append(cs, edsCluster("bad"))
		es = append(es, assignment("bad", "10.9.9.9"))
	}
	s, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  cs,
		resource.EndpointType: es,
		resource.ListenerType: {httpListener(t, "0.0.0.0_80", "80"), tlsListener(t, "0.0.0.0_443", "kubernetes://cred")},
		resource.RouteType:    {&routev3.RouteConfiguration{Name: "80"}},
		resource.SecretType:   {&tlsv3.Secret{Name: "kubernetes://cred"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tlsListener terminates TLS with a certificate from SDS.
func tlsListener(t *testing.T, name, secret string) *listenerv3.Listener {
	l := httpListener(t, name, "https.443")
	ctx, err := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx}}
	return l
}

// server is go-control-plane's ADS server on a real socket.
type server struct {
	cache  cachev3.SnapshotCache
	addr   string
	grpc   *grpc.Server
	mu     sync.Mutex
	nacks  []string
	nodes  []string
	deltas []*discoveryv3.DeltaDiscoveryRequest
}

func startServer(t *testing.T, addr string, cache cachev3.SnapshotCache) *server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a just-stopped server may linger
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cache: cache, addr: ln.Addr().String(), grpc: grpc.NewServer()}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if r.GetNode() != nil {
				s.nodes = append(s.nodes, r.GetNode().GetId())
			}
			if r.GetErrorDetail() != nil {
				s.nacks = append(s.nacks, r.GetErrorDetail().GetMessage())
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.deltas = append(s.deltas, r)
			if r.GetNode() != nil {
				s.nodes = append(s.nodes, r.GetNode().GetId())
			}
			if r.GetErrorDetail() != nil {
				s.nacks = append(s.nacks, r.GetErrorDetail().GetMessage())
			}
			return nil
		},
	}
	srv := serverv3.NewServer(context.Background(), cache, cb)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, srv)
	go s.grpc.Serve(ln)
	t.Cleanup(s.grpc.Stop)
	return s
}

func (s *server) nackList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacks...)
}

// recorder is a Handler that rejects clusters named "bad".
type recorder struct {
	mu    sync.Mutex
	sets  map[string]map[string]*anypb.Any
	order []string
}

func (r *recorder) Apply(typeURL string, res map[string]*anypb.Any) error {
	if typeURL == resource.ClusterType {
		if _, ok := res["bad"]; ok {
			return fmt.Errorf("clusters[\"bad\"].lb_policy: rejected by test")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sets == nil {
		r.sets = map[string]map[string]*anypb.Any{}
	}
	r.sets[typeURL] = res
	r.order = append(r.order, typeURL)
	return nil
}

func (r *recorder) names(typeURL string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.sets[typeURL] {
		out = append(out, n)
	}
	sortStrings(out)
	return strings.Join(out, ",")
}

func shortTypes(urls []string) []string {
	var out []string
	for _, u := range urls {
		out = append(out, u[strings.LastIndexByte(u, '.')+1:])
	}
	return out
}

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientEndToEnd(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		name := "delta"
		if sotw {
			name = "sotw"
		}
		t.Run(name, func(t *testing.T) {
			cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "v1", []string{"a", "b"}, false)); err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, "", cache)
			h := &recorder{}
			store := stats.NewStore()
			c, err := New(Options{Address: srv.addr, Node: &corev3.Node{Id: nodeID}, SotW: sotw, Handler: h, Stats: store,
				Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()

			select {
			case <-c.Synced():
			case <-time.After(10 * time.Second):
				t.Fatal("timed out waiting for sync")
			}
			waitFor(t, "routes", func() bool { return h.names(resource.RouteType) == "80" && h.names(resource.EndpointType) == "a,b" })
			waitFor(t, "the listener's secret", func() bool { return h.names(resource.SecretType) == "kubernetes://cred" })
			if got := h.names(resource.ClusterType); got != "a,b" {
				t.Errorf("got clusters %q, want a,b", got)
			}
			if got := h.names(resource.ListenerType); got != "0.0.0.0_443,0.0.0.0_80" {
				t.Errorf("got listeners %q, want 0.0.0.0_443,0.0.0.0_80", got)
			}
			h.mu.Lock()
			if got := strings.Join(shortTypes(h.order[:4]), ","); got != "Cluster,ClusterLoadAssignment,Listener,RouteConfiguration" {
				t.Errorf("got apply order %s, want Envoy's warming order CDS, EDS, LDS, RDS", got)
			}
			h.mu.Unlock()

			// A rejected update is NACKed; the last good config stays.
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "v2", []string{"a", "b"}, true)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a NACK", func() bool { return len(srv.nackList()) > 0 })
			if got := srv.nackList()[0]; !strings.Contains(got, "rejected by test") {
				t.Errorf("got NACK detail %q, want the handler's error", got)
			}
			st := c.Status()[0]
			if st.TypeURL != resource.ClusterType || st.LastError == "" || (sotw && st.Version != "v1") {
				t.Errorf("got cluster status %+v, want last error set and version v1", st)
			}
			if got := h.names(resource.ClusterType); got != "a,b" {
				t.Errorf("after NACK: got clusters %q, want a,b", got)
			}
			// A server that re-sends the rejected version is paced, not
			// answered in a hot loop.
			time.Sleep(300 * time.Millisecond)
			if got := store.CounterValue("cluster_manager.cds.update_rejected"); got < 1 || got > 5 {
				t.Errorf("got cluster_manager.cds.update_rejected %d, want between 1 and 5 (paced)", got)
			}
			if got := store.Get("control_plane.connected_state").Gauge.Value(); got != 1 {
				t.Errorf("got control_plane.connected_state %d, want 1", got)
			}

			// A good update removes b; EDS follows the cluster set.
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "v3", []string{"a", "c"}, false)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "clusters a,c", func() bool { return h.names(resource.ClusterType) == "a,c" })
			waitFor(t, "endpoints a,c", func() bool { return h.names(resource.EndpointType) == "a,c" })
			if st := c.Status()[0]; st.LastError != "" || st.Version != "v3" && sotw {
				t.Errorf("got cluster status %+v, want accepted v3", st)
			}
			if got := c.Status()[1].Subscribed; strings.Join(got, ",") != "a,c" {
				t.Errorf("got EDS subscription %v, want [a c]", got)
			}
			if res := c.Resources(resource.EndpointType); len(res) != 2 || res[0].Name != "a" || res[0].LastUpdated.IsZero() {
				t.Errorf("got endpoint resources %+v, want a and c with times", res)
			}

			// The server goes away: config stays; a new server on the same
			// address gets a reconnect carrying the node again.
			srv.grpc.Stop()
			time.Sleep(20 * time.Millisecond)
			if got := h.names(resource.ClusterType); got != "a,c" {
				t.Errorf("while disconnected: got clusters %q, want a,c", got)
			}
			cache2 := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
			if err := cache2.SetSnapshot(context.Background(), nodeID, snapshot(t, "v4", []string{"d"}, false)); err != nil {
				t.Fatal(err)
			}
			srv2 := startServer(t, srv.addr, cache2)
			waitFor(t, "clusters from the new server", func() bool { return h.names(resource.ClusterType) == "d" })
			waitFor(t, "endpoints from the new server", func() bool { return h.names(resource.EndpointType) == "d" })
			srv2.mu.Lock()
			nodes := append([]string(nil), srv2.nodes...)
			srv2.mu.Unlock()
			if len(nodes) == 0 || nodes[0] != nodeID {
				t.Errorf("got nodes %v on reconnect, want %s first", nodes, nodeID)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	h := HandlerFunc(func(string, map[string]*anypb.Any) error { return nil })
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no address", Options{Node: &corev3.Node{Id: "x"}, Handler: h}, "Address must be set"},
		{"no handler", Options{Address: "127.0.0.1:1", Node: &corev3.Node{Id: "x"}}, "Handler must be set"},
		{"no node id", Options{Address: "127.0.0.1:1", Handler: h}, "Node.Id must be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := New(Options{Address: "x:1", Node: &corev3.Node{Id: "n"}, Handler: HandlerFunc(func(string, map[string]*anypb.Any) error { return nil }),
		Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second}, Rand: func() float64 { return 0.999 }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n        int
		min, max time.Duration
	}{{0, 50 * time.Millisecond, 100 * time.Millisecond}, {1, 100 * time.Millisecond, 200 * time.Millisecond}, {10, 500 * time.Millisecond, time.Second}}
	for _, tt := range tests {
		if got := c.backoff(tt.n); got < tt.min || got >= tt.max {
			t.Errorf("backoff(%d): got %v, want in [%v, %v)", tt.n, got, tt.min, tt.max)
		}
	}
}

func TestListenersWaitForEndpointsThenTimeOut(t *testing.T) {
	// The server knows the cluster but has no endpoints for it: listeners
	// must still come once the initial fetch timeout passes.
	s, err := cachev3.NewSnapshot("v1", map[resource.Type][]types.Resource{
		resource.ClusterType:  {edsCluster("lonely")},
		resource.ListenerType: {httpListener(t, "0.0.0.0_80", "80")},
		resource.RouteType:    {&routev3.RouteConfiguration{Name: "80"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cache.SetSnapshot(context.Background(), nodeID, s)
	srv := startServer(t, "", cache)
	h := &recorder{}
	c, err := New(Options{Address: srv.addr, Node: &corev3.Node{Id: nodeID}, Handler: h, InitialFetchTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "listeners after the timeout", func() bool { return h.names(resource.ListenerType) == "0.0.0.0_80" })
	if got := h.names(resource.EndpointType); got != "" {
		t.Errorf("got endpoints %q, want none", got)
	}
}

func TestRunLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "v1", []string{"a"}, false))
	srv := startServer(t, "", cache)
	c, err := New(Options{Address: srv.addr, Node: &corev3.Node{Id: nodeID}, Handler: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	<-c.Synced()
	cancel()
	<-done
	srv.grpc.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("got %d goroutines after Run returned, want at most %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// silentCDS answers listener and route requests but never clusters.
type silentCDS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	t *testing.T
}

func (s *silentCDS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	l, _ := anypb.New(httpListener(s.t, "0.0.0.0_80", "80"))
	r, _ := anypb.New(&routev3.RouteConfiguration{Name: "80"})
	for {
		req, err := st.Recv()
		if err != nil {
			return err
		}
		if req.GetResponseNonce() != "" {
			continue // an ACK
		}
		var res []*anypb.Any
		switch req.GetTypeUrl() {
		case resource.ListenerType:
			res = []*anypb.Any{l}
		case resource.RouteType:
			res = []*anypb.Any{r}
		default:
			continue // clusters: never answered
		}
		if err := st.Send(&discoveryv3.DiscoveryResponse{TypeUrl: req.GetTypeUrl(), VersionInfo: "1", Nonce: "n-" + req.GetTypeUrl(), Resources: res}); err != nil {
			return err
		}
	}
}

func TestListenersWithoutClusters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, &silentCDS{t: t})
	go gs.Serve(ln)
	defer gs.Stop()
	h := &recorder{}
	c, err := New(Options{Address: ln.Addr().String(), Node: &corev3.Node{Id: nodeID}, SotW: true, Handler: h, InitialFetchTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "listeners although clusters never came", func() bool {
		return h.names(resource.ListenerType) == "0.0.0.0_80" && h.names(resource.RouteType) == "80"
	})
	if c.Status()[0].Acked != 0 {
		t.Errorf("got clusters acked, want none (the server never sent them)")
	}
}
