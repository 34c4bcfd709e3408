package server

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A route moved from cluster a to a new cluster b: the push adds b and its
// endpoints, then the route, and removes a and its endpoints last, so the
// proxy never routes to a cluster it lacks or one without endpoints.
func orderSnapshots(t *testing.T) (v1, v2 *Snapshot) {
	v1 = snapshot("v1", map[string][]*Resource{
		resourcev3.ClusterType:  {res(t, "a", "1")},
		resourcev3.EndpointType: {res(t, "a", "1")},
		resourcev3.RouteType:    {res(t, "r", "to-a")},
	})
	v2 = snapshot("v2", map[string][]*Resource{
		resourcev3.ClusterType:  {res(t, "b", "1")},
		resourcev3.EndpointType: {res(t, "b", "1")},
		resourcev3.RouteType:    {res(t, "r", "to-b")},
	})
	return v1, v2
}

func TestDeltaPushIsMakeBeforeBreak(t *testing.T) {
	gen := &fakeGen{}
	v1, v2 := orderSnapshots(t)
	gen.snap.Store(v1)
	h := start(t, gen)
	st := h.delta(t)
	node := &corev3.Node{Id: "sidecar~10.0.0.2~b.ns~ns.svc.cluster.local"}
	for _, req := range []*discoveryv3.DeltaDiscoveryRequest{
		{Node: node, TypeUrl: resourcev3.ClusterType},
		{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}},
		{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"r"}},
	} {
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}); err != nil {
			t.Fatal(err)
		}
	}
	gen.snap.Store(v2)
	h.srv.Push(Push{Changed: time.Now()})
	var got []string
	for range 5 {
		r, err := within(t, st.Recv)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, ShortType(r.TypeUrl)+" +"+names(r.Resources)+" -"+strings.Join(r.RemovedResources, ","))
	}
	want := []string{"CDS +b -", "EDS +b -", "RDS +r -", "CDS + -a", "EDS + -a"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("push order:\n got %q\nwant %q", got, want)
	}
}

func TestSotWPushIsMakeBeforeBreak(t *testing.T) {
	gen := &fakeGen{}
	v1, v2 := orderSnapshots(t)
	gen.snap.Store(v1)
	h := start(t, gen)
	st := h.sotw(t)
	node := &corev3.Node{Id: "sidecar~10.0.0.2~b.ns~ns.svc.cluster.local"}
	for _, req := range []*discoveryv3.DiscoveryRequest{
		{Node: node, TypeUrl: resourcev3.ClusterType},
		{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a"}},
		{TypeUrl: resourcev3.RouteType, ResourceNames: []string{"r"}},
	} {
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce, VersionInfo: r.VersionInfo, ResourceNames: req.ResourceNames}
		if err := st.Send(ack); err != nil {
			t.Fatal(err)
		}
	}
	gen.snap.Store(v2)
	h.srv.Push(Push{Changed: time.Now()})
	var got []string
	for range 5 {
		r, err := within(t, st.Recv)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, ShortType(r.TypeUrl)+" "+anyNames(t, r))
	}
	want := []string{"CDS a,b", "EDS a,b", "RDS r", "CDS b", "EDS b"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("push order:\n got %q\nwant %q", got, want)
	}
}

// within receives one response, or fails after a generous bound (a push
// that sends fewer responses than expected would otherwise hang).
func within[R any](t *testing.T, recv func() (R, error)) (R, error) {
	t.Helper()
	type got struct {
		r   R
		err error
	}
	ch := make(chan got, 1)
	go func() {
		r, err := recv()
		ch <- got{r, err}
	}()
	select {
	case g := <-ch:
		return g.r, g.err
	case <-time.After(10 * time.Second):
		var zero R
		return zero, errString("no response within 10s")
	}
}
