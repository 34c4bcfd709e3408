package translate

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
)

// TestGRPCProxylessInterop serves the translation for a GENERATOR=grpc node
// from go-control-plane's ADS server and points a real grpc-go client at
// xds:///ratings.default.svc.cluster.local:9090: grpc-go must accept every
// resource (it NACKs what it cannot use) and reach the right backend, by
// subset, through the VirtualService routes.
func TestGRPCProxylessInterop(t *testing.T) {
	v1Addr := startHealthServer(t)
	v2Addr := startHealthServer(t)
	cfgYAML := fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: ratings, subset: v2}}]
  - route: [{destination: {host: ratings, subset: v1}}]
`, v1Addr.Port, v2Addr.Port)
	res, err := config.Parse([]byte(cfgYAML), "interop.yaml")
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("parse: %v %v", err, res.Errors)
	}
	cfg := config.NewSnapshot(res.Resources)
	const nodeID = "sidecar~127.0.0.1~grpc-client.default~default.svc.cluster.local"
	in := Input{
		Proxy:    &Proxy{ID: nodeID, Type: SidecarProxy, Namespace: "default", Generator: GeneratorGRPC},
		Config:   cfg,
		Registry: serviceentry.Build(cfg, ""),
		Mesh:     DefaultMesh(),
	}
	out := Translate(in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xdsAddr := serveADS(t, ctx, map[string]*Output{nodeID: out})
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
}`, xdsAddr, nodeID)
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///ratings.default.svc.cluster.local:9090",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	call := func(md metadata.MD) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		if md != nil {
			cctx = metadata.NewOutgoingContext(cctx, md)
		}
		var p peer.Peer
		resp, err := client.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true), grpc.Peer(&p))
		if err != nil {
			t.Fatalf("Check through xds: %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("got status %v, want SERVING", resp.GetStatus())
		}
		return p.Addr.String()
	}
	for i := 0; i < 3; i++ {
		if got, want := call(nil), v1Addr.String(); got != want {
			t.Errorf("default route: got backend %s, want v1 %s", got, want)
		}
		if got, want := call(metadata.Pairs("x-canary", "true")), v2Addr.String(); got != want {
			t.Errorf("x-canary route: got backend %s, want v2 %s", got, want)
		}
	}
}

func startHealthServer(t *testing.T) *net.TCPAddr {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().(*net.TCPAddr)
}

// serveADS serves each node's Output from go-control-plane's snapshot cache
// over ADS on 127.0.0.1 and returns the address.
func serveADS(t *testing.T, ctx context.Context, outs map[string]*Output) string {
	t.Helper()
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	for nodeID, out := range outs {
		resources := map[resource.Type][]types.Resource{}
		for _, c := range out.Clusters {
			resources[resource.ClusterType] = append(resources[resource.ClusterType], c)
		}
		for _, e := range out.Endpoints {
			resources[resource.EndpointType] = append(resources[resource.EndpointType], e)
		}
		for _, l := range out.Listeners {
			resources[resource.ListenerType] = append(resources[resource.ListenerType], l)
		}
		for _, r := range out.Routes {
			resources[resource.RouteType] = append(resources[resource.RouteType], r)
		}
		snap, err := cachev3.NewSnapshot("1", resources)
		if err != nil {
			t.Fatal(err)
		}
		// snap.Consistent() is not used: go-control-plane does not follow RDS
		// names inside api_listener, so it reports grpc listeners as
		// inconsistent; checkConsistent (the package oracle) does follow them.
		checkConsistent(t, out)
		if err := cache.SetSnapshot(ctx, nodeID, snap); err != nil {
			t.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, serverv3.NewServer(ctx, cache, nil))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestGRPCProxylessServerInterop runs a real grpc-go xDS server (as a
// proxyless gRPC workload would) on the server-side listener Inbound
// generates, and calls it.
func TestGRPCProxylessServerInterop(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cfgYAML := fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: grpc, protocol: GRPC, targetPort: %d}]
  endpoints: [{address: 127.0.0.1}]
`, port)
	res, err := config.Parse([]byte(cfgYAML), "interop.yaml")
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("parse: %v %v", err, res.Errors)
	}
	cfg := config.NewSnapshot(res.Resources)
	const nodeID = "sidecar~127.0.0.1~ratings-v1.default~default.svc.cluster.local"
	in := Input{
		Proxy:    &Proxy{ID: nodeID, Type: SidecarProxy, Namespace: "default", Generator: GeneratorGRPC, IPs: []string{"127.0.0.1"}},
		Config:   cfg,
		Registry: serviceentry.Build(cfg, ""),
		Mesh:     DefaultMesh(),
	}
	out := Translate(in)
	want := fmt.Sprintf("%s127.0.0.1:%d", GRPCInboundListenerPrefix, port)
	found := false
	for _, l := range out.Listeners {
		found = found || l.GetName() == want
	}
	if !found {
		t.Fatalf("no listener %s in the output", want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xdsAddr := serveADS(t, ctx, map[string]*Output{nodeID: out})
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}},
  "server_listener_resource_name_template": %q
}`, xdsAddr, nodeID, GRPCInboundListenerPrefix+"%s")
	serving := make(chan error, 1)
	srv, err := xds.NewGRPCServer(grpc.Creds(insecure.NewCredentials()), xds.BootstrapContentsForTesting([]byte(bootstrap)),
		xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				serving <- nil
			} else if args.Err != nil {
				serving <- args.Err
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	select {
	case err := <-serving:
		if err != nil {
			t.Fatalf("xds server not serving: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("xds server did not start serving within 20s")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("call through the xDS server's listener: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("got %v, want SERVING", resp.GetStatus())
	}
}
