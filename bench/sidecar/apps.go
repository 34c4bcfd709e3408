package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// streamEcho answers every message of a FullDuplexCall with its payload.
type streamEcho struct {
	testgrpc.UnimplementedTestServiceServer
}

func (streamEcho) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// apps runs the server workload's apps until SIGTERM: a fortio server on
// the mesh ports (reached through the sidecars or HAProxy), one on the
// direct ports (the no-mesh path), and the streaming echo on both stream
// ports.
func apps(args []string) error {
	fs := flag.NewFlagSet("apps", flag.ExitOnError)
	fortio := fs.String("fortio", "fortio", "fortio binary")
	fs.Parse(args)
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()
	exited := make(chan error, 2)
	for _, ports := range [][2]int{{meshHTTP, meshGRPC}, {directHTTP, directGRPC}} {
		c := exec.Command(*fortio, "server", "-loglevel", "warning",
			"-http-port", strconv.Itoa(ports[0]), "-grpc-port", strconv.Itoa(ports[1]),
			"-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled", "-ui-path", "")
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return fmt.Errorf("start fortio server: %w", err)
		}
		children = append(children, c)
		go func() { exited <- fmt.Errorf("fortio server on %d exited: %v", ports[0], c.Wait()) }()
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, streamEcho{})
	for _, port := range []int{meshStream, directStream} {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		go s.Serve(ln)
	}
	defer s.Stop()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
		return nil
	case err := <-exited:
		return err
	}
}
