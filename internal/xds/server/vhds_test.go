package server

import (
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// routeTable is route configuration "80" with n virtual hosts; host
// "svc-<edited>" routes to cluster tag.
func routeTable(n, edited int, tag string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "80"}
	for i := 0; i < n; i++ {
		host := fmt.Sprintf("svc-%03d.ns.svc.cluster.local:80", i)
		cluster := "outbound|80||" + host
		if i == edited {
			cluster += "|" + tag
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: host, Domains: []string{host, fmt.Sprintf("svc-%03d", i)},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}}})
	}
	return rc
}

// vhdsSnapshot has the full route configuration and its VHDS form.
func vhdsSnapshot(t *testing.T, version string, rc *routev3.RouteConfiguration) *Snapshot {
	t.Helper()
	full, err := NewResource(rc.GetName(), rc)
	if err != nil {
		t.Fatal(err)
	}
	slim, vhosts, err := VHDSResources(rc)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot(version, map[string][]*Resource{
		resourcev3.RouteType:       {full},
		VHDSRoutes:                 {slim},
		resourcev3.VirtualHostType: vhosts,
	})
}

func vhdsNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{VHDSMetadataKey: structpb.NewStringValue("true")}}}
}

func TestVHDSSendsOnlyTheChangedVirtualHost(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(vhdsSnapshot(t, "v1", routeTable(200, 7, "a")))
	h := start(t, gen)
	st := h.delta(t)
	recv := func(what string) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return r
	}
	ack := func(r *discoveryv3.DeltaDiscoveryResponse) {
		t.Helper()
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}); err != nil {
			t.Fatal(err)
		}
	}

	// The route configuration comes in its VHDS form.
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: vhdsNode("sidecar~10.0.0.2~b.ns~ns.svc.cluster.local"),
		TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"80"}}); err != nil {
		t.Fatal(err)
	}
	rds := recv("RDS")
	if len(rds.Resources) != 1 {
		t.Fatalf("RDS: got %d resources, want 1", len(rds.Resources))
	}
	var rc routev3.RouteConfiguration
	if err := rds.Resources[0].Resource.UnmarshalTo(&rc); err != nil {
		t.Fatal(err)
	}
	if len(rc.VirtualHosts) != 0 || rc.GetVhds().GetConfigSource().GetAds() == nil {
		t.Fatalf("RDS: got %d virtual hosts, vhds %v; want 0 and vhds over ADS", len(rc.VirtualHosts), rc.GetVhds())
	}
	ack(rds)

	// Subscribing with the route configuration's name (Envoy's namespace
	// subscription) takes all its virtual hosts.
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.VirtualHostType, ResourceNamesSubscribe: []string{"80"}}); err != nil {
		t.Fatal(err)
	}
	vhds := recv("VHDS")
	if len(vhds.Resources) != 200 || vhds.Resources[7].Name != "80/svc-007.ns.svc.cluster.local:80" || len(vhds.RemovedResources) != 0 {
		t.Fatalf("VHDS: got %d virtual hosts (first %q), removed %v; want 200", len(vhds.Resources), vhds.Resources[0].Name, vhds.RemovedResources)
	}
	ack(vhds)
	<-h.acks
	<-h.acks

	// One virtual host is edited: exactly it is sent, no route
	// configuration.
	gen.snap.Store(vhdsSnapshot(t, "v2", routeTable(200, 7, "b")))
	h.srv.Push(Push{})
	up := recv("push")
	if up.TypeUrl != resourcev3.VirtualHostType || names(up.Resources) != "80/svc-007.ns.svc.cluster.local:80" || len(up.RemovedResources) != 0 {
		t.Fatalf("push: got %s +%s -%v, want VHDS +80/svc-007...", ShortType(up.TypeUrl), names(up.Resources), up.RemovedResources)
	}
	var vh routev3.VirtualHost
	if err := up.Resources[0].Resource.UnmarshalTo(&vh); err != nil {
		t.Fatal(err)
	}
	if got := vh.Routes[0].GetRoute().GetCluster(); !strings.HasSuffix(got, "|b") {
		t.Errorf("pushed virtual host routes to %q, want the edited cluster", got)
	}
	full := proto.Size(routeTable(200, 7, "b"))
	if got := proto.Size(up); got*50 > full {
		t.Errorf("push is %d bytes, want under 1/50 of the full table's %d", got, full)
	}
	t.Logf("edit: %d bytes over VHDS, full route configuration %d bytes", proto.Size(up), full)
	ack(up)
	if a := <-h.acks; a.TypeURL != resourcev3.VirtualHostType || a.Version != "v2" {
		t.Errorf("ack: got %s %s, want VHDS v2", ShortType(a.TypeURL), a.Version)
	}

	// A virtual host that does not exist is answered as removed (Envoy
	// waits for an answer to a "<route>/<host>" subscription).
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.VirtualHostType, ResourceNamesSubscribe: []string{"80/nowhere:80"}}); err != nil {
		t.Fatal(err)
	}
	miss := recv("missing virtual host")
	if len(miss.Resources) != 0 || strings.Join(miss.RemovedResources, ",") != "80/nowhere:80" {
		t.Fatalf("missing virtual host: got +%s -%v, want -80/nowhere:80", names(miss.Resources), miss.RemovedResources)
	}
	ack(miss)

	// A virtual host that goes away is removed by name.
	gen.snap.Store(vhdsSnapshot(t, "v3", routeTable(199, 7, "b")))
	h.srv.Push(Push{})
	up = recv("removal")
	if up.TypeUrl != resourcev3.VirtualHostType || len(up.Resources) != 0 || strings.Join(up.RemovedResources, ",") != "80/svc-199.ns.svc.cluster.local:80" {
		t.Fatalf("removal: got %s +%s -%v, want VHDS -80/svc-199...", ShortType(up.TypeUrl), names(up.Resources), up.RemovedResources)
	}
}

// Streams that don't ask for VHDS, and State-of-the-World streams even
// when they do, keep the full route configuration.
func TestVHDSOnlyForDeltaStreamsThatAsk(t *testing.T) {
	gen := &fakeGen{}
	gen.snap.Store(vhdsSnapshot(t, "v1", routeTable(20, 0, "a")))
	h := start(t, gen)
	hosts := func(a []byte) int {
		var rc routev3.RouteConfiguration
		if err := proto.Unmarshal(a, &rc); err != nil {
			t.Fatal(err)
		}
		return len(rc.VirtualHosts)
	}

	d := h.delta(t)
	if err := d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "sidecar~10.0.0.3~c.ns~ns.svc.cluster.local"},
		TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"80"}}); err != nil {
		t.Fatal(err)
	}
	r, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Resources) != 1 || hosts(r.Resources[0].Resource.Value) != 20 {
		t.Errorf("Delta without VHDS: got %d resources, want the full route configuration", len(r.Resources))
	}

	s := h.sotw(t)
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: vhdsNode("sidecar~10.0.0.4~d.ns~ns.svc.cluster.local"),
		TypeUrl: resourcev3.RouteType, ResourceNames: []string{"80"}}); err != nil {
		t.Fatal(err)
	}
	sr, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Resources) != 1 || hosts(sr.Resources[0].Value) != 20 {
		t.Errorf("SotW asking for VHDS: got %d resources (%s), want the full route configuration", len(sr.Resources), sr.Resources[0].TypeUrl)
	}
}

// A virtual host moved onto a new cluster arrives after that cluster and
// before the old cluster's removal (make-before-break, order.go).
func TestVHDSPushIsMakeBeforeBreak(t *testing.T) {
	gen := &fakeGen{}
	withClusters := func(version string, rc *routev3.RouteConfiguration, clusters ...string) *Snapshot {
		s := vhdsSnapshot(t, version, rc)
		for _, c := range clusters {
			s.Resources[resourcev3.ClusterType] = append(s.Resources[resourcev3.ClusterType], res(t, c, "1"))
		}
		return s
	}
	const oldC, newC = "outbound|80||svc-001.ns.svc.cluster.local:80|old", "outbound|80||svc-001.ns.svc.cluster.local:80|new"
	gen.snap.Store(withClusters("v1", routeTable(3, 1, "old"), oldC))
	h := start(t, gen)
	st := h.delta(t)
	send := func(r *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
		return r
	}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: vhdsNode("sidecar~10.0.0.5~e.ns~ns.svc.cluster.local"), TypeUrl: resourcev3.ClusterType})
	recv()
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"80"}})
	recv()
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.VirtualHostType, ResourceNamesSubscribe: []string{"80"}})
	recv()

	gen.snap.Store(withClusters("v2", routeTable(3, 1, "new"), newC))
	h.srv.Push(Push{})
	var got []string
	for i := 0; i < 3; i++ {
		r := recv()
		got = append(got, fmt.Sprintf("%s+%s-%s", ShortType(r.TypeUrl), names(r.Resources), strings.Join(r.RemovedResources, ",")))
	}
	want := "CDS+" + newC + "-|VHDS+80/svc-001.ns.svc.cluster.local:80-|CDS+-" + oldC
	if strings.Join(got, "|") != want {
		t.Errorf("push order: got %s, want %s", strings.Join(got, "|"), want)
	}
}
