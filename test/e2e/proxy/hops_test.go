package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// hopScript is the benchmark's PROXY_CMD wrapper; the tests drive the
// proxies through it, so the bench hookup is tested too.
func hopScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "bench", "proxy-hop.sh")
}

// startHop runs one hop through bench/proxy-hop.sh and waits for its port.
func startHop(t *testing.T, listen, upstream, role, proto string) *exec.Cmd {
	t.Helper()
	work := t.TempDir()
	cmd := exec.Command(hopScript(), work, listen, upstream, role, proto, "1")
	cmd.Env = append(os.Environ(), "TRELLIS_PROXY="+proxyBin)
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("hop %s did not exit on SIGTERM", role)
		}
		if t.Failed() {
			t.Logf("%s hop output:\n%s", role, out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return cmd
		}
		select {
		case err := <-exited:
			t.Fatalf("hop %s exited: %v\n%s", role, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("hop %s did not listen on %s", role, listen)
	return nil
}

// twoHops puts an outbound and an inbound hop in front of server and
// returns the outbound hop's address.
func twoHops(t *testing.T, server, proto string) string {
	in, out := freePort(t), freePort(t)
	startHop(t, in, server, "inbound", proto)
	startHop(t, out, in, "outbound", proto)
	return out
}

func TestTwoHopsHTTP1(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s peer=%t %s", r.Method, r.URL.Path, r.Header.Get("x-envoy-peer-metadata") != "", b)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	front := twoHops(t, ln.Addr().String(), "http")
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		body := strings.Repeat("x", i*100)
		resp, err := c.Post("http://"+front+"/echo", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The inbound hop strips the peer metadata the outbound hop added.
		if want := "POST /echo peer=false " + body; resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("got %d %.80q, want 200 %.80q", resp.StatusCode, b, want)
		}
	}
}

func TestTwoHopsGRPC(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	go gs.Serve(ln)
	defer gs.Stop()
	front := twoHops(t, ln.Addr().String(), "grpc")
	cc, err := grpc.NewClient(front, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100}); err != nil {
		t.Fatalf("unary: %v", err)
	}
	_, err = tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "nope"}})
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "nope" {
		t.Errorf("got %v, want PermissionDenied nope (grpc-status through both hops)", err)
	}
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i * 1000)}}})
		resp, err := stream.Recv()
		if err != nil || len(resp.GetPayload().GetBody()) != i*1000 {
			t.Fatalf("stream message %d: got %d bytes, %v", i, len(resp.GetPayload().GetBody()), err)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("got %v, want EOF", err)
	}
}

func TestTwoHopsWebSocket(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Header.Get("Upgrade") != "websocket" {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
				io.Copy(c, br) // echo
			}()
		}
	}()
	front := twoHops(t, ln.Addr().String(), "http")
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("got %v %v, want 101", resp, err)
	}
	io.WriteString(c, "frame-1")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "frame-1" {
		t.Fatalf("got %q %v, want the echo through both hops", buf, err)
	}
}

// TestSIGTERMDrainsInFlight sends SIGTERM while a request is in flight:
// the request completes and the proxy exits.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	release := make(chan struct{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	listen := freePort(t)
	hop := startHop(t, listen, ln.Addr().String(), "inbound", "http")
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + listen + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{body: string(b)}
	}()
	time.Sleep(200 * time.Millisecond)
	hop.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	close(release)
	if r := <-res; r.err != nil || r.body != "done" {
		t.Errorf("in-flight request: got %q %v, want done", r.body, r.err)
	}
}
