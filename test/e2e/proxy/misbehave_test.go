package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// scriptedADS is a control plane that sends whatever the test tells it,
// well-formed or not, over SotW and Delta ADS, and records the proxy's
// answers (ACK or NACK with its reason) per response nonce.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr string

	mu      sync.Mutex
	state   map[string][]*anypb.Any // type URL -> resources (in order)
	streams map[*adsStream]bool
	answers map[string]string // nonce -> "" (ACK) or the NACK's message
	nonce   int
}

type adsStream struct {
	mu    sync.Mutex
	sotw  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	delta discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	subs  map[string]bool
	sent  map[string]map[string]bool // delta: type -> names the proxy has
}

func startScriptedADS(t *testing.T) *scriptedADS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedADS{addr: ln.Addr().String(), state: map[string][]*anypb.Any{}, streams: map[*adsStream]bool{}, answers: map[string]string{}}
	// The server may send up to 64 MiB, more than the proxy below allows.
	g := grpc.NewServer(grpc.MaxSendMsgSize(64 << 20))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return s
}

// set replaces a type's resources and sends them to every subscribed
// stream; it returns the nonce of the response.
func (s *scriptedADS) set(typeURL string, res ...*anypb.Any) string {
	s.mu.Lock()
	s.state[typeURL] = res
	var streams []*adsStream
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.nonce++
	nonce := strconv.Itoa(s.nonce)
	s.mu.Unlock()
	for _, st := range streams {
		st.send(typeURL, res, nonce)
	}
	return nonce
}

func (s *scriptedADS) nextNonce() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonce++
	return strconv.Itoa(s.nonce)
}

// answer waits for the proxy's ACK ("") or NACK (the reason) of nonce.
func (s *scriptedADS) answer(t *testing.T, nonce string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		a, ok := s.answers[nonce]
		s.mu.Unlock()
		if ok {
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no ACK or NACK for response %s", nonce)
	return ""
}

func (s *scriptedADS) record(nonce string, detail interface{ GetMessage() string }, isNack bool) {
	if nonce == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if isNack {
		s.answers[nonce] = "NACK: " + detail.GetMessage()
	} else if _, ok := s.answers[nonce]; !ok {
		s.answers[nonce] = ""
	}
}

func (st *adsStream) send(typeURL string, res []*anypb.Any, nonce string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.subs[typeURL] {
		return
	}
	if st.sotw != nil {
		st.sotw.Send(&discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: nonce, Nonce: nonce, Resources: res})
		return
	}
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, SystemVersionInfo: nonce, Nonce: nonce}
	now := map[string]bool{}
	for i, a := range res {
		name := resourceName(a, i)
		now[name] = true
		resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: name, Version: nonce, Resource: a})
	}
	for name := range st.sent[typeURL] {
		if !now[name] {
			resp.RemovedResources = append(resp.RemovedResources, name)
		}
	}
	st.sent[typeURL] = now
	st.delta.Send(resp)
}

// resourceName reads the name of a well-formed resource; for a malformed
// one it makes one up, as a broken control plane would still send a name.
func resourceName(a *anypb.Any, i int) string {
	m, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Sprintf("malformed-%d", i)
	}
	if n, ok := m.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	return fmt.Sprintf("unnamed-%d", i)
}

func (s *scriptedADS) join(st *adsStream) {
	s.mu.Lock()
	s.streams[st] = true
	s.mu.Unlock()
}

func (s *scriptedADS) leave(st *adsStream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
}

// subscribe marks typeURL as wanted by the stream and sends what the type
// holds now.
func (s *scriptedADS) subscribe(st *adsStream, typeURL string) {
	st.mu.Lock()
	first := !st.subs[typeURL]
	st.subs[typeURL] = true
	st.mu.Unlock()
	if !first {
		return
	}
	s.mu.Lock()
	res := s.state[typeURL]
	s.mu.Unlock()
	st.send(typeURL, res, s.nextNonce())
}

func (s *scriptedADS) StreamAggregatedResources(srv discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := &adsStream{sotw: srv, subs: map[string]bool{}}
	s.join(st)
	defer s.leave(st)
	for {
		req, err := srv.Recv()
		if err != nil {
			return err
		}
		s.record(req.GetResponseNonce(), req.GetErrorDetail(), req.GetErrorDetail() != nil)
		if req.GetResponseNonce() == "" {
			s.subscribe(st, req.GetTypeUrl())
		}
	}
}

func (s *scriptedADS) DeltaAggregatedResources(srv discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := &adsStream{delta: srv, subs: map[string]bool{}, sent: map[string]map[string]bool{}}
	s.join(st)
	defer s.leave(st)
	for {
		req, err := srv.Recv()
		if err != nil {
			return err
		}
		s.record(req.GetResponseNonce(), req.GetErrorDetail(), req.GetErrorDetail() != nil)
		if req.GetResponseNonce() == "" {
			s.subscribe(st, req.GetTypeUrl())
		}
	}
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// answeringListener binds addr and answers every request with body,
// through RDS route routeName when it is set, else an inline route.
func answeringListener(t *testing.T, addr, body, routeName string) *anypb.Any {
	host, p, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(p)
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:  "scripted",
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}}},
	}
	if routeName != "" {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: routeName,
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: directRoute("inline", body, 0)}
	}
	return anyOf(t, &listenerv3.Listener{
		Name:    "scripted",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pn)}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, h)},
		}}}},
	})
}

// directRoute answers body on "*"; padding adds that many extra virtual
// hosts (to make a route configuration large).
func directRoute(name, body string, padding int) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name}
	for i := 0; i < padding; i++ {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("pad-%d", i),
			Domains: []string{fmt.Sprintf("padding-service-%06d.some-namespace.svc.cluster.local", i), fmt.Sprintf("padding-service-%06d.some-namespace.svc.cluster.local:8080", i)},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 204}}}},
		})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}}}}}})
	return rc
}

// adsBootstrap writes an Envoy bootstrap that takes everything from the
// scripted server; maxMsg sets envoy_grpc.max_receive_message_length.
func adsBootstrap(t *testing.T, server string, delta bool, maxMsg int) string {
	path, _ := adsBootstrapAdmin(t, server, delta, maxMsg)
	return path
}

func adsBootstrapAdmin(t *testing.T, server string, delta bool, maxMsg int) (string, string) {
	host, p, _ := net.SplitHostPort(server)
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	admin := freePort(t)
	limit := ""
	if maxMsg > 0 {
		limit = fmt.Sprintf("\n        max_receive_message_length: %d", maxMsg)
	}
	y := fmt.Sprintf(`node: {id: "sidecar~127.0.0.1~scripted.default~default.svc.cluster.local", cluster: scripted.default}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    grpc_services:
    - envoy_grpc:
        cluster_name: xds-grpc%s
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, port(admin), api, limit, host, p)
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, admin
}

func getBody(addr string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b), err
}

func waitBody(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got, _ = getBody(addr)
		if got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("got %q from %s, want %q", got, addr, want)
}

// TestMisbehavingControlPlane feeds the real proxy, over SotW and Delta,
// what a broken control plane could send: resources of the wrong type,
// undecodable bytes, unknown extensions, dangling references and huge
// responses. Each is NACKed with a reason naming what is wrong (or, past
// the size limit, ends the stream), and the config in force keeps serving.
func TestMisbehavingControlPlane(t *testing.T) {
	for _, delta := range []bool{true, false} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			ads := startScriptedADS(t)
			ads.set(resourcev3.ClusterType)
			listen := freePort(t)
			ads.set(resourcev3.ListenerType, answeringListener(t, listen, "good", ""))
			bs, admin := adsBootstrapAdmin(t, ads.addr, delta, 0)
			startProxy(t, "-c", bs)
			defer func() {
				if t.Failed() {
					resp, err := http.Get("http://" + admin + "/config_dump")
					if err == nil {
						b, _ := io.ReadAll(resp.Body)
						t.Logf("config_dump:\n%s", b[min(len(b), 6000):])
					}
				}
			}()
			waitBody(t, listen, "200 good")

			unknownFilter := &hcmv3.HttpConnectionManager{StatPrefix: "x", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: directRoute("r", "bad", 0)},
				HttpFilters: []*hcmv3.HttpFilter{
					{Name: "acme.filters.http.mystery", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, durationpb.New(time.Second))}},
					{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}},
				}}
			withFilter := func(f proto.Message) *anypb.Any {
				host, p, _ := net.SplitHostPort(listen)
				pn, _ := strconv.Atoi(p)
				return anyOf(t, &listenerv3.Listener{Name: "scripted",
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pn)}}}},
					FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
						ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, f)}}}}}})
			}
			bad := []struct {
				name string
				res  []*anypb.Any
				want string // in the NACK's message
			}{
				{name: "route configuration in a listener response", res: []*anypb.Any{anyOf(t, directRoute("r", "x", 0))}, want: "RouteConfiguration"},
				{name: "undecodable bytes", res: []*anypb.Any{{TypeUrl: resourcev3.ListenerType, Value: []byte{0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01}}}, want: "cannot parse"},
				{name: "unknown http filter", res: []*anypb.Any{withFilter(unknownFilter)}, want: "acme.filters.http.mystery"},
				{name: "network filter of an unknown type", res: []*anypb.Any{withFilter(durationpb.New(time.Second))}, want: "Duration"},
			}
			if !delta {
				bad = append(bad, struct {
					name string
					res  []*anypb.Any
					want string
				}{name: "duplicate names", res: []*anypb.Any{answeringListener(t, listen, "a", ""), answeringListener(t, listen, "b", "")}, want: "duplicate"})
			}
			for _, b := range bad {
				nonce := ads.set(resourcev3.ListenerType, b.res...)
				got := ads.answer(t, nonce)
				if !strings.HasPrefix(got, "NACK") || !strings.Contains(got, b.want) {
					t.Errorf("%s: got %q, want a NACK naming %q", b.name, got, b.want)
				}
				if body, err := getBody(listen); body != "200 good" {
					t.Errorf("%s: after the NACK got %q, %v; want the last good listener answering 200 good", b.name, body, err)
				}
			}

			// A dangling reference: the new listener names a route
			// configuration the server never sends. The new version warms
			// and the old one keeps serving meanwhile.
			nonce := ads.set(resourcev3.ListenerType, answeringListener(t, listen, "", "never-sent"))
			if got := ads.answer(t, nonce); got != "" {
				t.Errorf("listener naming a missing route: got %q, want an ACK (it warms)", got)
			}
			if body, _ := getBody(listen); body != "200 good" {
				t.Errorf("while the new listener warms: got %q, want 200 good", body)
			}

			// A huge route configuration (about 6 MB, over gRPC's 4 MiB
			// default) is taken, as Envoy takes it.
			big := anyOf(t, directRoute("never-sent", "big", 40000))
			if proto.Size(big) < 5<<20 {
				t.Fatalf("test route is only %d bytes", proto.Size(big))
			}
			nonce = ads.set(resourcev3.RouteType, big)
			if got := ads.answer(t, nonce); got != "" {
				t.Errorf("6 MB route configuration: got %q, want an ACK", got)
			}
			waitBody(t, listen, "200 big")
		})
	}
}

// TestControlPlaneResponseOverLimit: a response over the bootstrap's
// max_receive_message_length ends the stream with RESOURCE_EXHAUSTED (it
// cannot be read, so it cannot be NACKed); the proxy says so in its log,
// keeps serving the config it has and reconnects.
func TestControlPlaneResponseOverLimit(t *testing.T) {
	ads := startScriptedADS(t)
	ads.set(resourcev3.ClusterType)
	listen := freePort(t)
	ads.set(resourcev3.ListenerType, answeringListener(t, listen, "good", ""))
	p := startProxy(t, "-c", adsBootstrap(t, ads.addr, true, 1<<20))
	waitBody(t, listen, "200 good")

	ads.set(resourcev3.ListenerType, answeringListener(t, listen, "", "big"))
	ads.set(resourcev3.RouteType, anyOf(t, directRoute("big", "big", 20000)))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.out.String(), "ResourceExhausted") {
		if time.Now().After(deadline) {
			t.Fatalf("no RESOURCE_EXHAUSTED in the proxy's log:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body, err := getBody(listen); body != "200 good" {
		t.Errorf("after the oversized response: got %q, %v; want 200 good", body, err)
	}
}
