package chaos

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// grpcPort is the bill service's gRPC port (service port; the app listens
// on grpcTarget in each server namespace).
const (
	grpcPort   = 9090
	grpcTarget = 8080
)

// echoServer answers UnaryCall with its instance name, the gRPC
// counterpart of demoapp's "this is NAME".
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e echoServer) UnaryCall(_ context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte("this is " + e.name)}}, nil
}

// grpcApp is a real gRPC server listening inside a server workload's
// namespace, behind its sidecar (the sidecar's inbound capture hands it
// the connections for port grpcTarget).
type grpcApp struct {
	s    *grpc.Server
	done chan struct{}
}

func startGRPCApp(ns, name string) (*grpcApp, error) {
	ln, err := netns.Listen(ns, "tcp", fmt.Sprintf(":%d", grpcTarget))
	if err != nil {
		return nil, err
	}
	a := &grpcApp{s: grpc.NewServer(), done: make(chan struct{})}
	testgrpc.RegisterTestServiceServer(a.s, echoServer{name: name})
	go func() { defer close(a.done); a.s.Serve(ln) }()
	return a, nil
}

// kill stops the server at once (connections closed, calls in flight
// cut), as SIGKILL of the app would.
func (a *grpcApp) kill() { a.s.Stop(); <-a.done }

// drain stops the server gracefully (GOAWAY, calls in flight finish), as
// SIGTERM of a well-behaved gRPC app does.
func (a *grpcApp) drain() { a.s.GracefulStop(); <-a.done }

// grpcConns is how many long-lived HTTP/2 connections the gRPC load
// spreads its calls over.
const grpcConns = 4

// startGRPCLoad sends a steady rate of unary calls from inside a namespace
// (captured by its sidecar) over a pool of long-lived HTTP/2 connections,
// open loop like the HTTP/1.1 load.
func startGRPCLoad(ns, target string, rate int) (*load, error) {
	var conns []*grpc.ClientConn
	for range grpcConns {
		cc, err := grpc.NewClient("passthrough:///"+target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return netns.Dial(ctx, ns, "tcp", addr)
			}))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, cc)
	}
	var next atomic.Uint32
	one := func(phase int) result {
		c := testgrpc.NewTestServiceClient(conns[next.Add(1)%grpcConns])
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		t0 := time.Now()
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		r := result{phase: phase, latency: time.Since(t0), grpc: true}
		if err != nil {
			st := status.Convert(err)
			r.code, r.answer = int(st.Code()), shortMsg(st.Message())
			return r
		}
		r.code, r.answer = int(codes.OK), string(resp.GetPayload().GetBody())
		return r
	}
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			for _, c := range conns {
				c.Close()
			}
		})
	}
	return runLoad(rate, one, closeAll), nil
}

func shortMsg(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}
