package xdsclient

import (
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	ads "github.com/trellis-mesh/trellis/internal/xds/server"
)

// routeRecorder keeps the route configurations the handler was given,
// decoded, and rejects one whose virtual host is named "bad".
type routeRecorder struct {
	recorder
	mu     sync.Mutex
	routes map[string]*routev3.RouteConfiguration
	calls  int
	// hostless counts route configurations handed over without virtual
	// hosts or still in their VHDS form.
	hostless int
}

func (r *routeRecorder) Apply(typeURL string, res map[string]*anypb.Any) error {
	if typeURL == resourcev3.RouteType {
		got := map[string]*routev3.RouteConfiguration{}
		for n, a := range res {
			var rc routev3.RouteConfiguration
			if err := a.UnmarshalTo(&rc); err != nil {
				return err
			}
			for _, vh := range rc.VirtualHosts {
				if vh.Name == "bad" {
					return errors.New("virtual_hosts[bad]: rejected by test")
				}
			}
			got[n] = &rc
		}
		r.mu.Lock()
		for _, rc := range got {
			if len(rc.VirtualHosts) == 0 || rc.Vhds != nil {
				r.hostless++
			}
		}
		if len(got) > 0 {
			r.calls++
		}
		r.routes = got
		r.mu.Unlock()
	}
	return r.recorder.Apply(typeURL, res)
}

// clusterOf returns the cluster host's virtual host in route "80" routes to.
func (r *routeRecorder) clusterOf(host string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, vh := range r.routes["80"].GetVirtualHosts() {
		if vh.Name == host {
			return vh.Routes[0].GetRoute().GetCluster()
		}
	}
	return ""
}

func (r *routeRecorder) hosts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.routes["80"].GetVirtualHosts())
}

func vhdsRouteTable(clusterOfB string, extra ...string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "80"}
	for _, h := range append([]string{"a", "b"}, extra...) {
		cluster := "a"
		if h == "b" {
			cluster = clusterOfB
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: h, Domains: []string{h},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}}})
	}
	return rc
}

// setVHDS serves clusters a, b and c, listener 80 and route "80" both whole
// and in its VHDS form, as trellisd does.
func (g *trellisdGen) setVHDS(t *testing.T, version string, rc *routev3.RouteConfiguration) {
	t.Helper()
	res := map[string][]*ads.Resource{}
	add := func(typ, name string, msg proto.Message) {
		r, err := ads.NewResource(name, msg)
		if err != nil {
			t.Fatal(err)
		}
		res[typ] = append(res[typ], r)
	}
	for _, c := range []string{"a", "b", "c"} {
		add(resourcev3.ClusterType, c, edsCluster(c))
		add(resourcev3.EndpointType, c, assignment(c, "10.0.0.1"))
	}
	add(resourcev3.ListenerType, "0.0.0.0_80", httpListener(t, "0.0.0.0_80", "80"))
	add(resourcev3.RouteType, "80", rc)
	slim, vhosts, err := ads.VHDSResources(rc)
	if err != nil {
		t.Fatal(err)
	}
	res[ads.VHDSRoutes] = []*ads.Resource{slim}
	res[resourcev3.VirtualHostType] = vhosts
	for _, list := range res {
		ads.SortResources(list)
	}
	g.mu.Lock()
	g.snap = &ads.Snapshot{Version: version, Resources: res}
	g.mu.Unlock()
}

func TestVHDSAgainstTrellisdServer(t *testing.T) {
	gen := &trellisdGen{}
	gen.setVHDS(t, "1", vhdsRouteTable("a"))
	srv := ads.New(ads.Options{Generator: gen, Logf: t.Logf})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go gs.Serve(ln)
	defer gs.Stop()

	node := &corev3.Node{Id: nodeID, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{ads.VHDSMetadataKey: structpb.NewStringValue("true")}}}
	h := &routeRecorder{}
	c, err := New(Options{Address: ln.Addr().String(), Node: node, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	status := func(typeURL string) TypeStatus {
		for _, s := range c.Status() {
			if s.TypeURL == typeURL {
				return s
			}
		}
		return TypeStatus{}
	}

	// The handler gets route "80" whole, once its virtual hosts are in:
	// never the empty VHDS form.
	waitFor(t, "route 80 with its virtual hosts", func() bool { return h.clusterOf("b") == "a" })
	h.mu.Lock()
	first, hostless := h.calls, h.hostless
	h.mu.Unlock()
	if first != 1 || h.hosts() != 2 || hostless != 0 {
		t.Errorf("got %d route updates (%d without virtual hosts), %d virtual hosts; want 1 update with both", first, hostless, h.hosts())
	}
	if got := len(c.Resources(resourcev3.VirtualHostType)); got != 2 {
		t.Errorf("got %d virtual host resources, want 2", got)
	}
	rds := status(resourcev3.RouteType)

	// An edit of virtual host b arrives over VHDS alone and is applied as
	// a whole new route configuration.
	gen.setVHDS(t, "2", vhdsRouteTable("c"))
	srv.Push(ads.Push{})
	waitFor(t, "the edit", func() bool { return h.clusterOf("b") == "c" })
	if got := status(resourcev3.RouteType); got.Acked != rds.Acked || got.Version != rds.Version {
		t.Errorf("RDS after the edit: got %d acks version %q, want it not resent (%d, %q)", got.Acked, got.Version, rds.Acked, rds.Version)
	}
	if v := status(resourcev3.VirtualHostType); v.Version != "2" || v.Subscribed[0] != "80" {
		t.Errorf("VHDS: got version %q subscribed %v, want 2 and [80]", v.Version, v.Subscribed)
	}

	// A virtual host the handler rejects is NACKed; the last good table
	// keeps serving.
	gen.setVHDS(t, "3", vhdsRouteTable("a", "bad"))
	srv.Push(ads.Push{})
	waitFor(t, "the NACK", func() bool { return status(resourcev3.VirtualHostType).LastError != "" })
	if h.clusterOf("b") != "c" || h.hosts() != 2 {
		t.Errorf("after NACK: b routes to %q with %d virtual hosts, want the last good c and 2", h.clusterOf("b"), h.hosts())
	}
	if got := len(c.Resources(resourcev3.VirtualHostType)); got != 2 {
		t.Errorf("after NACK: %d virtual host resources kept, want 2", got)
	}

	// A later good edit, adding a virtual host, is applied.
	gen.setVHDS(t, "4", vhdsRouteTable("b", "d"))
	srv.Push(ads.Push{})
	waitFor(t, "the next edit", func() bool { return h.clusterOf("b") == "b" && h.hosts() == 3 })
}

func TestVHDSMetadataKeyIsTheServers(t *testing.T) {
	if VHDSMetadataKey != ads.VHDSMetadataKey {
		t.Errorf("xdsclient.VHDSMetadataKey %q, server's %q: they must match", VHDSMetadataKey, ads.VHDSMetadataKey)
	}
}

// TestVHDSCrossedResponseDoesNotAnswerANewRoute: a VHDS response about
// route "80" that crosses, on the wire, the subscription to a new route
// "8080" does not answer it: "8080" is handed over only with its own
// virtual hosts, and meanwhile "80" keeps being updated.
func TestVHDSCrossedResponseDoesNotAnswerANewRoute(t *testing.T) {
	h := &routeRecorder{}
	c, err := New(Options{Address: "127.0.0.1:1", Node: &corev3.Node{Id: nodeID}, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	split := func(rc *routev3.RouteConfiguration) (*Resource, map[string]*Resource) {
		slim, vhosts, err := ads.VHDSResources(rc)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*Resource{}
		for _, v := range vhosts {
			out[v.Name] = &Resource{Name: v.Name, Version: v.Version, Resource: v.Any}
		}
		return &Resource{Name: slim.Name, Version: slim.Version, Resource: slim.Any}, out
	}
	// apply mimics a Delta response: next is the held set with the
	// response's resources put in (new pointers) and its removals taken out.
	apply := func(typeURL string, put map[string]*Resource, removed ...string) {
		t.Helper()
		c.mu.Lock()
		next := map[string]*Resource{}
		for n, r := range c.types[typeURL].resources {
			next[n] = r
		}
		c.mu.Unlock()
		for n, r := range put {
			cp := *r
			next[n] = &cp
		}
		for _, n := range removed {
			delete(next, n)
		}
		if err := c.apply(typeURL, next, "v", "n"); err != nil {
			t.Fatalf("apply %s: %v", ads.ShortType(typeURL), err)
		}
	}
	handed := func() (names string, hosts map[string]int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		hosts = map[string]int{}
		var ns []string
		for n, rc := range h.routes {
			ns = append(ns, n)
			hosts[n] = len(rc.VirtualHosts)
		}
		sort.Strings(ns)
		return strings.Join(ns, ","), hosts
	}

	r80, v80 := split(vhdsRouteTable("a"))
	apply(resourcev3.RouteType, map[string]*Resource{"80": r80})
	if got, _ := handed(); got != "" {
		t.Fatalf("before its virtual hosts: handed %q, want no route configuration", got)
	}
	apply(resourcev3.VirtualHostType, v80)
	if got, hosts := handed(); got != "80" || hosts["80"] != 2 {
		t.Fatalf("after its virtual hosts: handed %q %v, want 80 with 2", got, hosts)
	}

	rc8080 := vhdsRouteTable("a")
	rc8080.Name = "8080"
	r8080, v8080 := split(rc8080)
	apply(resourcev3.RouteType, map[string]*Resource{"80": r80, "8080": r8080})
	if got := c.types[resourcev3.VirtualHostType].subscribed; !got["80"] || !got["8080"] {
		t.Fatalf("VHDS subscriptions %v, want 80 and 8080", got)
	}
	if got, _ := handed(); got != "80" {
		t.Errorf("8080 subscribed, not answered: handed %q, want 80 alone", got)
	}
	// The crossed response: b of route 80 changes.
	_, v80c := split(vhdsRouteTable("c"))
	apply(resourcev3.VirtualHostType, map[string]*Resource{"80/b": v80c["80/b"]})
	if got, hosts := handed(); got != "80" || h.clusterOf("b") != "c" || hosts["80"] != 2 {
		t.Errorf("after a response about 80 only: handed %q %v, b to %q; want 80 alone, with b to c", got, hosts, h.clusterOf("b"))
	}
	apply(resourcev3.VirtualHostType, v8080)
	if got, hosts := handed(); got != "80,8080" || hosts["8080"] != 2 {
		t.Errorf("after 8080's virtual hosts: handed %q %v, want 80 and 8080 with 2 each", got, hosts)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hostless != 0 {
		t.Errorf("%d route configurations handed over without virtual hosts, want 0", h.hostless)
	}
}
