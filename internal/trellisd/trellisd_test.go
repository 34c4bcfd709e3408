package trellisd

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

const greeterHost = "greeter.default.svc.cluster.local"

func writeGreeter(t *testing.T, dir string, v1, v2 int, portV1, portV2 string) {
	t.Helper()
	fixture(t, dir, "greeter.yaml", map[string]string{"PORT_V1": portV1, "PORT_V2": portV2})
	writeVS(t, dir, v1, v2)
}

func writeVS(t *testing.T, dir string, v1, v2 int) {
	t.Helper()
	fixture(t, dir, "greeter-vs.yaml", map[string]string{"WEIGHT_V1": fmt.Sprint(v1), "WEIGHT_V2": fmt.Sprint(v2)})
}

func sidecarNode(ip, pod string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "LABELS": map[string]any{"app": "client"}})
	return &corev3.Node{Id: "sidecar~" + ip + "~" + pod + ".default~default.svc.cluster.local", Cluster: "client.default", Metadata: md}
}

func dialADS(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// weights returns "cluster=weight,..." of the first route of the greeter
// virtual host in a held route configuration.
func weights(h fakeproxy.Held, routeName string) string {
	a := h.Resource(resourcev3.RouteType, routeName)
	if a == nil {
		return ""
	}
	var rc routev3.RouteConfiguration
	if err := a.UnmarshalTo(&rc); err != nil {
		return "unmarshal: " + err.Error()
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if d != greeterHost {
				continue
			}
			var parts []string
			for _, r := range vh.GetRoutes() {
				for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
					parts = append(parts, fmt.Sprintf("%s=%d", wc.GetName(), wc.GetWeight().GetValue()))
				}
				if c := r.GetRoute().GetCluster(); c != "" {
					parts = append(parts, c)
				}
				break
			}
			return strings.Join(parts, ",")
		}
	}
	return ""
}

// End to end: a config dir served by a real trellisd to a Delta ADS client
// over gRPC; edits reach the client; a bad edit is reported and the last
// good config keeps serving; debug and metrics endpoints tell the story.
func TestServeConfigDirOverDeltaADS(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	s := startTrellisd(t, Options{ConfigDir: dir})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := sidecarNode("10.1.1.1", "client-1")
	c, err := fakeproxy.Dial(ctx, dialADS(t, s.XDSAddr()), node, fakeproxy.Options{KeepResources: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1 := "outbound|7070|v1|" + greeterHost
	v2 := "outbound|7070|v2|" + greeterHost
	want := v1 + "=90," + v2 + "=10"
	err = c.Wait(ctx, func(h fakeproxy.Held) bool {
		return h.Has(resourcev3.ClusterType, v1) && h.Has(resourcev3.EndpointType, v1) &&
			h.Has(resourcev3.ListenerType, "virtualOutbound") && weights(h, "7070") == want
	})
	if err != nil {
		t.Fatalf("initial config: %v (want clusters, endpoints, listeners and route 7070 = %s)", err, want)
	}

	// Every type is SYNCED in /debug/syncz.
	eventually(t, func() error {
		var sz SynczResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/syncz", &sz)
		if len(sz.Proxies) != 1 || sz.Proxies[0].ID != node.Id {
			return errorf("syncz proxies: got %+v, want %s", sz.Proxies, node.Id)
		}
		if got := len(sz.Proxies[0].Types); got != 4 {
			return errorf("syncz types: got %d, want 4", got)
		}
		for _, ts := range sz.Proxies[0].Types {
			if !ts.Synced() {
				return errorf("syncz %s: got sent %s acked %s, want synced", ts.Type, ts.SentNonce, ts.AckedNonce)
			}
		}
		return nil
	})

	// Edit the split: the client follows.
	writeVS(t, dir, 10, 90)
	want = v1 + "=10," + v2 + "=90"
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool { return weights(h, "7070") == want }); err != nil {
		t.Fatalf("after edit: %v (got %s, want %s)", err, c.Names(resourcev3.RouteType), want)
	}
	good := c.Version(resourcev3.RouteType)

	// A bad edit is reported with its field path and changes nothing.
	writeVS(t, dir, 150, 90)
	eventually(t, func() error {
		var cz ConfigzResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
		for f, errs := range cz.Errors {
			if strings.Contains(f, "greeter-vs.yaml") && strings.Contains(strings.Join(errs, "\n"), "weight") {
				return nil
			}
		}
		return errorf("configz errors: got %v, want greeter-vs.yaml with a weight error", cz.Errors)
	})
	var cz ConfigzResponse
	getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
	if !strings.Contains(string(mustJSON(t, cz.Resources)), `"weight":10`) {
		t.Errorf("configz: the last good VirtualService (weight 10) is not served")
	}
	c.Wait(ctx, func(h fakeproxy.Held) bool { return true })
	if got := weights2(t, c); got != want {
		t.Errorf("after bad edit: got %s, want %s (last good)", got, want)
	}
	if got := c.Version(resourcev3.RouteType); got != good {
		t.Errorf("after bad edit: RDS version got %s, want %s (nothing pushed)", got, good)
	}

	// Registry and per-proxy dumps.
	var rz RegistryzResponse
	getJSON(t, "http://"+s.DebugAddr()+"/debug/registryz", &rz)
	if len(rz.Services) != 1 || rz.Services[0].Hostname != greeterHost || len(rz.Endpoints[greeterHost]) != 2 {
		t.Errorf("registryz: got %d services, %d greeter endpoints, want 1 and 2", len(rz.Services), len(rz.Endpoints[greeterHost]))
	}
	var cd ConfigDumpResponse
	getJSON(t, "http://"+s.DebugAddr()+"/debug/config_dump?proxyID="+node.Id, &cd)
	if len(cd.Resources["CDS"]) == 0 || !strings.Contains(string(mustJSON(t, cd.Resources["RDS"])), v2) {
		t.Errorf("config_dump: got %d clusters and RDS without %s", len(cd.Resources["CDS"]), v2)
	}

	// Metrics.
	metrics := string(httpGet(t, "http://"+s.MetricsAddr()+"/metrics"))
	for _, m := range []string{`trellis_xds_pushes_total{type="rds"}`, `trellis_xds_connected_proxies 1`, `pilot_xds 1`,
		`trellis_xds_convergence_seconds_count`, `trellis_xds_push_time_seconds_count`, `process_resident_memory_bytes`,
		`go_goroutines`, `go_memstats_heap_alloc_bytes`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics: missing %s", m)
		}
	}
	if strings.Contains(metrics, "trellis_xds_convergence_seconds_count 0") {
		t.Errorf("metrics: convergence histogram is empty after an edit was ACKed")
	}
}

func weights2(t *testing.T, c *fakeproxy.Client) string {
	var got string
	c.Wait(context.Background(), func(h fakeproxy.Held) bool { got = weights(h, "7070"); return true })
	return got
}

func TestRunRejectsBadOptions(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"traffic policy", Options{OutboundTrafficPolicy: "ALLOW_SOME"}, "want ALLOW_ANY or REGISTRY_ONLY"},
		{"log encoding", Options{AccessLogEncoding: "XML"}, "want TEXT or JSON"},
		{"missing dir", Options{ConfigDir: "/nonexistent/trellis", XDSAddress: "127.0.0.1:0"}, "--config-dir"},
		{"busy port", Options{XDSAddress: busy.Addr().String()}, "xds address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Logf = t.Logf
			err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestEnvelopeClientFollowsEdits drives the benchmark's DecodeEnvelope
// client against trellisd: it must still follow clusters to endpoints and
// listeners to routes, and see and ACK edits.
func TestEnvelopeClientFollowsEdits(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	s := startTrellisd(t, Options{ConfigDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := fakeproxy.Dial(ctx, dialADS(t, s.XDSAddr()), sidecarNode("10.1.1.2", "client-2"), fakeproxy.Options{Decode: fakeproxy.DecodeEnvelope})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1 := "outbound|7070|v1|" + greeterHost
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool {
		return h.Has(resourcev3.EndpointType, v1) && h.Has(resourcev3.RouteType, "7070")
	}); err != nil {
		t.Fatalf("initial config: %v (want endpoints %s and route 7070)", err, v1)
	}
	before := c.Version(resourcev3.RouteType)
	writeVS(t, dir, 10, 90)
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool { return h.Version(resourcev3.RouteType) != before }); err != nil {
		t.Fatalf("after edit: %v (route version stayed %s)", err, before)
	}
	eventually(t, func() error {
		for _, ts := range s.ADS().Status()[0].Types {
			if !ts.Synced() {
				return errorf("%s: got sent %s acked %s, want synced", ts.Type, ts.SentNonce, ts.AckedNonce)
			}
		}
		return nil
	})
}
