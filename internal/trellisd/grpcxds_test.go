package trellisd

import (
	"context"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"
)

// greeterBackend is a real gRPC server on loopback that names itself in the
// "x-backend" response header of every call.
func greeterBackend(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-backend", name))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return port
}

// split makes n calls and returns the share (0..100) answered by v1.
func split(t *testing.T, ctx context.Context, client healthpb.HealthClient, n int) float64 {
	t.Helper()
	v1 := 0
	for i := 0; i < n; i++ {
		var md metadata.MD
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		switch b := md.Get("x-backend"); {
		case len(b) == 1 && b[0] == "v1":
			v1++
		case len(b) == 1 && b[0] == "v2":
		default:
			t.Fatalf("call %d: got x-backend %v, want v1 or v2", i, b)
		}
	}
	return 100 * float64(v1) / float64(n)
}

// Interop: grpc-go's own xds:/// resolver, bootstrapped at a real trellisd
// serving a config dir, reaches two backends registered by WorkloadEntry,
// split by a VirtualService, and follows an edit of the file.
func TestProxylessGRPCFollowsVirtualService(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, greeterBackend(t, "v1"), greeterBackend(t, "v2"))
	s := startTrellisd(t, Options{ConfigDir: dir})

	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "sidecar~127.0.0.1~grpc-client.default~default.svc.cluster.local",
           "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
}`, s.XDSAddr())
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+greeterHost+":7070", grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const calls = 1000
	if got := split(t, ctx, client, calls); math.Abs(got-90) > 4 {
		t.Errorf("90/10 split: got %.1f%% to v1 over %d calls, want 90±4", got, calls)
	}

	// Edit the file to 10/90 and wait for the client to follow: a run of
	// calls mostly to v2 shows the new route is in use.
	writeVS(t, dir, 10, 90)
	eventually(t, func() error {
		if got := split(t, ctx, client, 50); got > 40 {
			return errorf("after edit: %.0f%% of 50 calls to v1, still the old split", got)
		}
		return nil
	})
	if got := split(t, ctx, client, calls); math.Abs(got-10) > 4 {
		t.Errorf("10/90 split: got %.1f%% to v1 over %d calls, want 10±4", got, calls)
	}
	// The client shows up in status, synced, without NACKs.
	for _, p := range s.ADS().Status() {
		for _, ts := range p.Types {
			if ts.LastNack != nil {
				t.Errorf("grpc client NACKed %s: %s", ts.Type, ts.LastNack.Message)
			}
		}
	}
	if n := s.ADS().Connected(); n != 1 {
		t.Errorf("connected: got %d, want 1 (the grpc client)", n)
	}
}
