package server

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// fakeGen serves whatever the test last set, to every node.
type fakeGen struct {
	snap atomic.Pointer[Snapshot]
	// reject makes Generate fail for node ids with this prefix.
	reject string
}

func (g *fakeGen) Generate(n *corev3.Node) (*Snapshot, error) {
	if g.reject != "" && strings.HasPrefix(n.GetId(), g.reject) {
		return nil, errString("malformed node id")
	}
	return g.snap.Load(), nil
}

type errString string

func (e errString) Error() string { return string(e) }

// res builds a cluster resource whose content depends on tag.
func res(t testing.TB, name, tag string) *Resource {
	t.Helper()
	r, err := NewResource(name, &clusterv3.Cluster{Name: name, AltStatName: tag})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func snapshot(version string, byType map[string][]*Resource) *Snapshot {
	for _, l := range byType {
		SortResources(l)
	}
	return &Snapshot{Version: version, Resources: byType}
}

type harness struct {
	srv  *Server
	gen  *fakeGen
	reg  *prometheus.Registry
	conn *grpc.ClientConn
	acks chan Ack
}

func start(t testing.TB, gen *fakeGen) *harness {
	t.Helper()
	h := &harness{gen: gen, reg: prometheus.NewRegistry(), acks: make(chan Ack, 1024)}
	h.srv = New(Options{Generator: gen, Registerer: h.reg, Logf: t.Logf, OnAck: func(a Ack) {
		select {
		case h.acks <- a:
		default:
		}
	}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions()...)
	h.srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	h.conn = cc
	return h
}

func (h *harness) sotw(t *testing.T) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (h *harness) delta(t *testing.T) discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func names(rs []*discoveryv3.Resource) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return strings.Join(out, ",")
}

func anyNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) string {
	t.Helper()
	var out []string
	for _, a := range resp.Resources {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Name)
	}
	return strings.Join(out, ",")
}

// waitStatus polls the server's status until ok accepts it.
func waitStatus(t *testing.T, s *Server, ok func([]ProxyStatus) bool) []ProxyStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the wanted state; last: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func typeStatus(st []ProxyStatus, id, typeURL string) (TypeStatus, bool) {
	for _, p := range st {
		if p.ID != id {
			continue
		}
		for _, ts := range p.Types {
			if ts.TypeURL == typeURL {
				return ts, true
			}
		}
	}
	return TypeStatus{}, false
}

func TestSotWSubscribeAckPushNack(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{
		resourcev3.ClusterType:  {res(t, "b", "1"), res(t, "a", "1")},
		resourcev3.EndpointType: {res(t, "a", "1"), res(t, "b", "1"), res(t, "c", "1")},
	}))
	h := start(t, gen)
	st := h.sotw(t)
	node := &corev3.Node{Id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", Cluster: "a.ns"}

	// CDS: an empty subscription is a wildcard.
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	cds, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := anyNames(t, cds), "a,b"; got != want {
		t.Errorf("CDS: got %s, want %s", got, want)
	}
	if cds.VersionInfo != "v1" {
		t.Errorf("CDS version: got %q, want v1", cds.VersionInfo)
	}
	// EDS: only what is asked for, in name order.
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "v1", ResponseNonce: cds.Nonce}); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"c", "a", "missing"}}); err != nil {
		t.Fatal(err)
	}
	eds, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := anyNames(t, eds), "a,c"; got != want {
		t.Errorf("EDS: got %s, want %s", got, want)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "v1", ResourceNames: []string{"c", "a", "missing"}, ResponseNonce: eds.Nonce}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h.srv, func(s []ProxyStatus) bool {
		c, _ := typeStatus(s, node.Id, resourcev3.ClusterType)
		e, _ := typeStatus(s, node.Id, resourcev3.EndpointType)
		return c.Synced() && e.Synced() && c.AckedVersion == "v1"
	})

	// A push that changes only an endpoint nobody here watches sends nothing
	// for EDS; a changed cluster resends the whole CDS list.
	gen.snap.Store(snapshot("v2", map[string][]*Resource{
		resourcev3.ClusterType:  {res(t, "a", "2"), res(t, "b", "1")},
		resourcev3.EndpointType: {res(t, "a", "1"), res(t, "b", "2"), res(t, "c", "1")},
	}))
	h.srv.Push(Push{})
	cds2, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if cds2.TypeUrl != resourcev3.ClusterType || anyNames(t, cds2) != "a,b" || cds2.VersionInfo != "v2" {
		t.Fatalf("push: got %s %q version %s, want CDS a,b v2", ShortType(cds2.TypeUrl), anyNames(t, cds2), cds2.VersionInfo)
	}
	// NACK it: the status shows the error, the metric counts it.
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "v1", ResponseNonce: cds2.Nonce,
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "cluster a: bad lb_policy"}}); err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, h.srv, func(s []ProxyStatus) bool {
		c, _ := typeStatus(s, node.Id, resourcev3.ClusterType)
		return c.Nacked()
	})
	c, _ := typeStatus(got, node.Id, resourcev3.ClusterType)
	if c.LastNack.Message != "cluster a: bad lb_policy" || c.AckedVersion != "v1" || c.SentVersion != "v2" {
		t.Errorf("after NACK: got %+v, want message, acked v1, sent v2", c)
	}
	if n := testutil.ToFloat64(h.srv.metrics.nacks.WithLabelValues("cds")); n != 1 {
		t.Errorf("trellis_xds_nacks_total{type=cds}: got %v, want 1", n)
	}
	if n := testutil.ToFloat64(h.srv.metrics.conns); n != 1 {
		t.Errorf("trellis_xds_connected_proxies: got %v, want 1", n)
	}
	if got[0].Cluster != "a.ns" || got[0].Delta {
		t.Errorf("status: got cluster %q delta %v, want a.ns false", got[0].Cluster, got[0].Delta)
	}

	// Changing the subscription on an ACK sends the new set.
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "v1", ResourceNames: []string{"b"}, ResponseNonce: eds.Nonce}); err != nil {
		t.Fatal(err)
	}
	eds2, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := anyNames(t, eds2), "b"; got != want || eds2.VersionInfo != "v2" {
		t.Errorf("EDS after resubscribe: got %s %s, want %s v2", got, eds2.VersionInfo, want)
	}
}

func TestDeltaSendsOnlyChanges(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(snapshot("v1", map[string][]*Resource{
		resourcev3.ListenerType: {res(t, "l1", "1"), res(t, "l2", "1"), res(t, "l3", "1")},
		resourcev3.RouteType:    {res(t, "80", "1"), res(t, "8080", "1")},
	}))
	h := start(t, gen)
	st := h.delta(t)
	node := &corev3.Node{Id: "sidecar~10.0.0.2~b.ns~ns.svc.cluster.local"}

	// Reconnect with l1 at the current version and l9 that no longer exists.
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType,
		InitialResourceVersions: map[string]string{"l1": res(t, "l1", "1").Version, "l9": "x"}}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(r.Resources), "l2,l3"; got != want {
		t.Errorf("initial LDS: got %s, want %s", got, want)
	}
	if got, want := strings.Join(r.RemovedResources, ","), "l9"; got != want {
		t.Errorf("initial LDS removed: got %s, want %s", got, want)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	// RDS by name; a name that does not exist comes back as removed.
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"80", "9090"}}); err != nil {
		t.Fatal(err)
	}
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(r.Resources)+"|"+strings.Join(r.RemovedResources, ","), "80|9090"; got != want {
		t.Errorf("RDS subscribe: got %s, want %s", got, want)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}

	// One listener changes, one goes away, route 8080 (unwatched) changes:
	// exactly that is sent, LDS before RDS.
	gen.snap.Store(snapshot("v2", map[string][]*Resource{
		resourcev3.ListenerType: {res(t, "l1", "1"), res(t, "l2", "2")},
		resourcev3.RouteType:    {res(t, "80", "2"), res(t, "8080", "2")},
	}))
	changed := time.Now()
	h.srv.Push(Push{Changed: changed})
	lds, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if lds.TypeUrl != resourcev3.ListenerType || names(lds.Resources) != "l2" || strings.Join(lds.RemovedResources, ",") != "l3" || lds.SystemVersionInfo != "v2" {
		t.Fatalf("push 1: got %s +%s -%v %s, want LDS +l2 -l3 v2", ShortType(lds.TypeUrl), names(lds.Resources), lds.RemovedResources, lds.SystemVersionInfo)
	}
	rds, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if rds.TypeUrl != resourcev3.RouteType || names(rds.Resources) != "80" || len(rds.RemovedResources) != 0 {
		t.Fatalf("push 2: got %s +%s -%v, want RDS +80", ShortType(rds.TypeUrl), names(rds.Resources), rds.RemovedResources)
	}
	for _, n := range []string{lds.Nonce, rds.Nonce} {
		tu := resourcev3.ListenerType
		if n == rds.Nonce {
			tu = resourcev3.RouteType
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: tu, ResponseNonce: n}); err != nil {
			t.Fatal(err)
		}
	}
	// Both ACKs carry the change time, so convergence is measured.
	for i := 0; i < 2; i++ {
		select {
		case a := <-h.acks:
			if a.Version == "v2" && !a.Changed.Equal(changed) {
				t.Errorf("ack %s: got changed %v, want %v", ShortType(a.TypeURL), a.Changed, changed)
			}
			if a.Version != "v2" {
				i-- // an ACK of the initial responses
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no ACK callback")
		}
	}
	if n := testutil.CollectAndCount(h.srv.metrics.convergence); n != 1 {
		t.Errorf("convergence histogram series: got %d, want 1", n)
	}
	waitStatus(t, h.srv, func(s []ProxyStatus) bool {
		l, _ := typeStatus(s, node.Id, resourcev3.ListenerType)
		r, _ := typeStatus(s, node.Id, resourcev3.RouteType)
		return l.Synced() && r.Synced() && l.AckedVersion == "v2" && s[0].Delta
	})

	// Unsubscribing 80 means a later change to it is not sent.
	// (Subscribing to a missing name in the same request gives a response
	// to wait for, so the push below cannot overtake the unsubscribe.)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesUnsubscribe: []string{"80"},
		ResourceNamesSubscribe: []string{"7070"}}); err != nil {
		t.Fatal(err)
	}
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(r.Resources)+"|"+strings.Join(r.RemovedResources, ","), "|7070"; got != want {
		t.Errorf("RDS subscribe 7070: got %s, want %s", got, want)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	gen.snap.Store(snapshot("v3", map[string][]*Resource{
		resourcev3.ListenerType: {res(t, "l1", "3"), res(t, "l2", "2")},
		resourcev3.RouteType:    {res(t, "80", "3"), res(t, "8080", "2")},
	}))
	h.srv.Push(Push{})
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.TypeUrl != resourcev3.ListenerType || names(r.Resources) != "l1" {
		t.Errorf("push 3: got %s +%s, want LDS +l1", ShortType(r.TypeUrl), names(r.Resources))
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: r.Nonce}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h.srv, func(s []ProxyStatus) bool {
		l, _ := typeStatus(s, node.Id, resourcev3.ListenerType)
		return l.AckedVersion == "v3"
	})
	if rs, _ := typeStatus(h.srv.Status(), node.Id, resourcev3.RouteType); rs.SentVersion != "v2" {
		t.Errorf("RDS after unsubscribe: got sent version %s, want v2 (nothing sent)", rs.SentVersion)
	}
}

func TestBadRequestsAreRejected(t *testing.T) {
	gen := &fakeGen{reject: "bogus"}
	gen.snap.Store(snapshot("v1", nil))
	h := start(t, gen)
	cases := []struct {
		name string
		req  *discoveryv3.DiscoveryRequest
		want string
	}{
		{"no node", &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType}, "must carry node"},
		{"no type", &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "sidecar~1.2.3.4~a.b~b.svc.cluster.local"}}, "type_url is required"},
		{"generator refuses node", &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "bogus"}, TypeUrl: resourcev3.ClusterType}, "malformed node id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := h.sotw(t)
			if err := st.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			_, err := st.Recv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
}

func TestEnqueueCoalesces(t *testing.T) {
	c := &conn{wake: make(chan struct{}, 1)}
	t0 := time.Unix(100, 0)
	for i := 10; i > 0; i-- {
		c.enqueue(t0.Add(time.Duration(i) * time.Second))
	}
	c.enqueue(t0.Add(20 * time.Second))
	if got := len(c.wake); got != 1 {
		t.Errorf("queued wakes: got %d, want 1", got)
	}
	if got, want := c.takePending(), t0.Add(time.Second); !got.Equal(want) {
		t.Errorf("pending change: got %v, want the earliest %v", got, want)
	}
	if got := c.takePending(); !got.IsZero() {
		t.Errorf("pending after take: got %v, want zero", got)
	}
}

// A client that stops reading must not hold up pushes to the others.
func TestSlowClientDoesNotBlockOthers(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	gen := &fakeGen{}
	mk := func(v int) *Snapshot {
		var rs []*Resource
		for i := 0; i < 3; i++ {
			rs = append(rs, res(t, "c"+strconv.Itoa(i), big+strconv.Itoa(v)))
		}
		return snapshot("v"+strconv.Itoa(v), map[string][]*Resource{resourcev3.ClusterType: rs})
	}
	gen.snap.Store(mk(0))
	h := start(t, gen)

	// The slow client subscribes and then never reads again.
	slow := h.delta(t)
	if err := slow.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "slow"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	fast := h.delta(t)
	if err := fast.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "fast"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r, err := fast.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	for v := 1; v <= 5; v++ {
		mu.Lock()
		gen.snap.Store(mk(v))
		h.srv.Push(Push{})
		mu.Unlock()
		// The fast client sees every version, though the slow one's
		// stream is stuck on flow control after the first megabytes.
		for {
			r, err = fast.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.SystemVersionInfo == "v"+strconv.Itoa(v) {
				break
			}
		}
		if got := len(r.Resources); got != 3 {
			t.Errorf("v%d: got %d changed resources, want 3", v, got)
		}
	}
	st, _ := typeStatus(h.srv.Status(), "slow", resourcev3.ClusterType)
	if st.SentVersion == "v5" {
		t.Logf("slow client kept up (flow-control windows were large enough)")
	}
}
