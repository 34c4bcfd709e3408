package xdsclient

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	ads "github.com/trellis-mesh/trellis/internal/xds/server"
)

// trellisdGen serves a snapshot that tests swap, through trellisd's own ADS
// server (internal/xds/server), the one the proxy meets in production.
type trellisdGen struct {
	mu   sync.Mutex
	snap *ads.Snapshot
}

func (g *trellisdGen) Generate(*corev3.Node) (*ads.Snapshot, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snap, nil
}

func (g *trellisdGen) set(t *testing.T, version string, clusters []string, bad bool) {
	t.Helper()
	add := func(m map[string][]*ads.Resource, typ, name string, msg proto.Message) {
		r, err := ads.NewResource(name, msg)
		if err != nil {
			t.Fatal(err)
		}
		m[typ] = append(m[typ], r)
	}
	res := map[string][]*ads.Resource{}
	all := append([]string(nil), clusters...)
	if bad {
		all = append(all, "bad")
	}
	for i, c := range all {
		add(res, resourcev3.ClusterType, c, edsCluster(c))
		add(res, resourcev3.EndpointType, c, assignment(c, fmt.Sprintf("10.0.0.%d", i+1)))
	}
	add(res, resourcev3.ListenerType, "0.0.0.0_80", httpListener(t, "0.0.0.0_80", "80"))
	add(res, resourcev3.RouteType, "80", &routev3.RouteConfiguration{Name: "80"})
	for _, list := range res {
		ads.SortResources(list)
	}
	g.mu.Lock()
	g.snap = &ads.Snapshot{Version: version, Resources: res}
	g.mu.Unlock()
}

func TestAgainstTrellisdServer(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		t.Run(map[bool]string{false: "delta", true: "sotw"}[sotw], func(t *testing.T) {
			gen := &trellisdGen{}
			gen.set(t, "1", []string{"a", "b"}, false)
			var nacks atomic.Int32
			srv := ads.New(ads.Options{Generator: gen, Logf: func(f string, args ...any) {
				if strings.Contains(strings.ToLower(fmt.Sprintf(f, args...)), "nack") {
					nacks.Add(1)
				}
			}})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer()
			srv.Register(gs)
			go gs.Serve(ln)
			defer gs.Stop()

			h := &recorder{}
			c, err := New(Options{Address: ln.Addr().String(), Node: &corev3.Node{Id: nodeID}, SotW: sotw, Handler: h})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			waitFor(t, "the first config", func() bool {
				return h.names(resourcev3.ClusterType) == "a,b" && h.names(resourcev3.EndpointType) == "a,b" && h.names(resourcev3.ListenerType) == "0.0.0.0_80" && h.names(resourcev3.RouteType) == "80"
			})
			gen.set(t, "2", []string{"a", "b"}, true)
			srv.Push(ads.Push{})
			waitFor(t, "the NACK", func() bool { return c.Status()[0].LastError != "" })
			if got := h.names(resourcev3.ClusterType); got != "a,b" {
				t.Errorf("after NACK: got clusters %q, want the last good a,b", got)
			}
			gen.set(t, "3", []string{"c"}, false)
			srv.Push(ads.Push{})
			waitFor(t, "the update", func() bool { return h.names(resourcev3.ClusterType) == "c" && h.names(resourcev3.EndpointType) == "c" })
			if st := c.Status()[0]; st.LastError != "" || st.Version != "3" {
				t.Errorf("got cluster status %+v, want version 3 accepted", st)
			}
			deadline := time.Now().Add(5 * time.Second)
			for srv.Connected() != 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if srv.Connected() != 1 {
				t.Errorf("got %d connected proxies, want 1", srv.Connected())
			}
		})
	}
}
