package proxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPCThroughTwoHops runs unary, bidirectional streaming and error
// status calls through an outbound and an inbound proxy (h2c both ways).
func TestGRPCThroughTwoHops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	route := vhost(`              - match: {prefix: /}
                route: {cluster: next, timeout: 0s}
`)
	hop2 := startProxy(t, []testListener{{Name: "in", Direction: "INBOUND", HCM: hcm(route, "")}}, []testCluster{{Name: "next", HTTP2: true, Addrs: []string{ln.Addr().String()}}}, nil)
	hop1 := startProxy(t, []testListener{{Name: "out", HCM: hcm(route, "")}}, []testCluster{{Name: "next", HTTP2: true, Addrs: []string{hop2.addr(t, "in")}}}, nil)

	cc, err := grpc.NewClient(hop1.addr(t, "out"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 1000, Payload: &testpb.Payload{Body: make([]byte, 2000)}})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetPayload().GetBody()); n != 1000 {
			t.Errorf("got %d payload bytes, want 1000", n)
		}
	})
	t.Run("status and trailers", func(t *testing.T) {
		var trailer metadata.MD
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}}, grpc.Trailer(&trailer))
		st, _ := status.FromError(err)
		if st.Code() != codes.NotFound || st.Message() != "no such thing" {
			t.Errorf("got %v %q, want NotFound %q", st.Code(), st.Message(), "no such thing")
		}
	})
	t.Run("custom metadata in trailers", func(t *testing.T) {
		var header, trailer metadata.MD
		mctx := metadata.AppendToOutgoingContext(ctx, "x-grpc-test-echo-initial", "init", "x-grpc-test-echo-trailing-bin", "\x0a\x0b")
		if _, err := tc.UnaryCall(mctx, &testpb.SimpleRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatal(err)
		}
		if got := header.Get("x-grpc-test-echo-initial"); len(got) != 1 || got[0] != "init" {
			t.Errorf("got initial metadata %v, want [init]", got)
		}
		if got := trailer.Get("x-grpc-test-echo-trailing-bin"); len(got) != 1 || got[0] != "\x0a\x0b" {
			t.Errorf("got trailing metadata %q, want [\\x0a\\x0b]", got)
		}
	})
	t.Run("bidirectional streaming", func(t *testing.T) {
		stream, err := tc.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, size := range []int32{10, 200, 3000, 40000} {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if got := int32(len(resp.GetPayload().GetBody())); got != size {
				t.Errorf("message %d: got %d bytes, want %d", i, got, size)
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("got %v at end of stream, want io.EOF", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		stream, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 3 {
			t.Errorf("got %d messages, want 3", n)
		}
	})
	t.Run("unimplemented", func(t *testing.T) {
		uc := testgrpc.NewUnimplementedServiceClient(cc)
		_, err := uc.UnimplementedCall(ctx, &testpb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("got %v, want Unimplemented", err)
		}
	})
}

// BenchmarkGRPCUnary measures a unary gRPC call (1 KiB each way) through
// one in-process proxy hop over h2c on both sides.
func BenchmarkGRPCUnary(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	b.Cleanup(srv.Stop)
	hop := startProxy(b, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: next, timeout: 0s}
`), "")}}, []testCluster{{Name: "next", HTTP2: true, Addrs: []string{ln.Addr().String()}}}, nil)
	cc, err := grpc.NewClient(hop.addr(b, "out"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	req := &testpb.SimpleRequest{ResponseSize: 1024, Payload: &testpb.Payload{Body: make([]byte, 1024)}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tc.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
