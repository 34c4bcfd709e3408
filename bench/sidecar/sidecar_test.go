package main

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/trellis-mesh/trellis/internal/local"
)

// The mesh the benchmark brings up is a valid local mesh whose server
// sidecar captures exactly the mesh ports, while the direct and HAProxy
// ports stay reachable without it.
func TestBenchMeshPlan(t *testing.T) {
	p, err := local.NewPlan(benchSpec("/bin/sidecar", "/bin/fortio"), local.Options{Prefix: "t80",
		Subnet: netip.MustParsePrefix("10.180.0.0/24"), VIPSubnet: netip.MustParsePrefix("10.180.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	var server *local.PlacedWorkload
	for i := range p.Workloads {
		if p.Workloads[i].Name == "server" {
			server = &p.Workloads[i]
		}
	}
	if server == nil {
		t.Fatal("no server workload in the plan")
	}
	if want := []uint32{meshStream, meshGRPC, meshHTTP}; !slices.Equal(server.InboundPorts, want) {
		t.Errorf("server inbound ports = %v, want %v", server.InboundPorts, want)
	}
	ex := interception().ExcludeInboundPorts
	for _, port := range append([]int{directHTTP, directGRPC, directStream}, haproxyInboundPorts...) {
		if !slices.Contains(ex, strconv.Itoa(port)) {
			t.Errorf("port %d is captured; it must be excluded (%v)", port, ex)
		}
	}
	for _, port := range server.InboundPorts {
		if slices.Contains(ex, strconv.Itoa(int(port))) {
			t.Errorf("mesh port %d is excluded from capture", port)
		}
	}
}

// The stream client counts the echoes of the streaming server over real
// sockets.
func TestStreamEcho(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, streamEcho{})
	go s.Serve(ln)
	defer s.Stop()
	r, err := runStreams(context.Background(), ln.Addr().String(), 3, 512, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages == 0 || r.Errors != 0 || r.Streams != 3 || r.Size != 512 {
		t.Fatalf("result %+v: want echoes and no errors on 3 streams of 512 B", r)
	}
}
