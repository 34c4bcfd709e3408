package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// streamResult is what `sidecar stream` prints.
type streamResult struct {
	Streams   int     `json:"streams"`
	Size      int     `json:"size"`
	Seconds   float64 `json:"seconds"`
	Messages  int64   `json:"messages"` // echoes received within Seconds
	PerSecond float64 `json:"messages_per_s"`
	MiBPerSec float64 `json:"mib_per_s"` // echoed payload received
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// stream opens -streams FullDuplexCall streams on one connection to -addr
// (from inside the client namespace, so the mesh path is captured by its
// sidecar), sends -size byte messages back to back on each for -d while
// reading the echoes, and prints the echoes received per second. gRPC's
// flow control bounds what is in flight, so the rate is what the path
// sustains.
func stream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stream", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port of the streaming echo (or of a proxy in front of it)")
	streams := fs.Int("streams", 1, "concurrent streams, all on one HTTP/2 connection")
	size := fs.Int("size", 1024, "payload bytes per message")
	d := fs.Duration("d", 5*time.Second, "how long the streams send")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("stream: -addr is required")
	}
	r, err := runStreams(ctx, *addr, *streams, *size, *d)
	if err != nil {
		return err
	}
	if r.Messages == 0 {
		fmt.Fprintf(os.Stderr, "stream: no echo received from %s\n", *addr)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// runStreams is stream's measurement: streams FullDuplexCalls on one
// connection to addr, size-byte messages, counted for d after a second of
// warm-up.
func runStreams(ctx context.Context, addr string, streams, size int, d time.Duration) (streamResult, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return streamResult{}, err
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		received, failures atomic.Int64
		counting           atomic.Bool
		firstErr           atomic.Value
		wg                 sync.WaitGroup
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, size)}}
	var open sync.WaitGroup
	open.Add(streams)
	stopSend := make(chan struct{})
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := client.FullDuplexCall(ctx)
			open.Done()
			if err != nil {
				fail(err)
				return
			}
			go func() {
				for {
					select {
					case <-stopSend:
						s.CloseSend()
						return
					default:
					}
					if err := s.Send(req); err != nil {
						if !errors.Is(err, io.EOF) {
							fail(err)
						}
						return
					}
				}
			}()
			for {
				resp, err := s.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) && ctx.Err() == nil {
						fail(err)
					}
					return
				}
				if counting.Load() && len(resp.GetPayload().GetBody()) == size {
					received.Add(1)
				}
			}
		}()
	}
	open.Wait()
	// One second of warm-up: windows open, buffers grow.
	time.Sleep(time.Second)
	counting.Store(true)
	t0 := time.Now()
	time.Sleep(d)
	counting.Store(false)
	n, secs := received.Load(), time.Since(t0).Seconds()
	close(stopSend)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cancel()
		<-done
	}
	r := streamResult{Streams: streams, Size: size, Seconds: secs, Messages: n,
		PerSecond: float64(n) / secs, MiBPerSec: float64(n) * float64(size) / secs / (1 << 20), Errors: failures.Load()}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstErr = e
	}
	return r, nil
}
