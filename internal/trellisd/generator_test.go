package trellisd

import (
	"os"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

func greeterState(t *testing.T, version uint64, w1 int) *state {
	t.Helper()
	var all []*config.Resource
	for _, f := range []string{"greeter.yaml", "greeter-vs.yaml"} {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("{{PORT_V1}}", "9001", "{{PORT_V2}}", "9002",
			"{{WEIGHT_V1}}", itoa(w1), "{{WEIGHT_V2}}", itoa(100-w1)).Replace(string(b))
		res, err := config.Parse([]byte(s), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) > 0 {
			t.Fatalf("parse %s: %v", f, res.Errors)
		}
		all = append(all, res.Resources...)
	}
	cfg := config.NewSnapshot(all)
	return &state{version: version, cfg: cfg, reg: serviceentry.Build(cfg, ""), mesh: translate.DefaultMesh()}
}

func itoa(i int) string { return strconv.Itoa(i) }

func node(ns, ip string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns})
	return &corev3.Node{Id: "sidecar~" + ip + "~pod-" + ip + "." + ns + "~" + ns + ".svc.cluster.local", Metadata: md}
}

func same(a, b []*server.Resource) bool { return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0] }

// Proxies with the same outbound key share one translation; a new state
// reuses the lists that did not change, so streams skip diffing them.
func TestGeneratorSharesOutbound(t *testing.T) {
	g := newGenerator(translateFuncs{})
	g.setState(greeterState(t, 1, 90))
	a, err := g.Generate(node("default", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Generate(node("default", "10.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := g.Generate(node("other", "10.0.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RouteType} {
		if !same(a.Resources[typ], b.Resources[typ]) {
			t.Errorf("%s: two proxies in one namespace got separate lists, want one shared", server.ShortType(typ))
		}
	}
	if same(a.Resources[resourcev3.RouteType], other.Resources[resourcev3.RouteType]) {
		t.Errorf("RDS: proxies in different namespaces share a list, want separate translations")
	}
	if got := len(g.cache); got != 2 {
		t.Errorf("cache entries: got %d, want 2 (one per namespace)", got)
	}
	if a.Version != "1" {
		t.Errorf("version: got %q, want 1", a.Version)
	}

	// A new weight changes the route only.
	g.setState(greeterState(t, 2, 50))
	a2, err := g.Generate(node("default", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !same(a.Resources[resourcev3.ClusterType], a2.Resources[resourcev3.ClusterType]) || !same(a.Resources[resourcev3.EndpointType], a2.Resources[resourcev3.EndpointType]) {
		t.Errorf("CDS/EDS: unchanged lists were not reused across states")
	}
	if same(a.Resources[resourcev3.RouteType], a2.Resources[resourcev3.RouteType]) || a.Resources[resourcev3.RouteType][0].Version == a2.Resources[resourcev3.RouteType][0].Version {
		t.Errorf("RDS: the changed route kept its old list or version")
	}
}

func TestGeneratorRejectsBadNode(t *testing.T) {
	g := newGenerator(translateFuncs{})
	g.setState(greeterState(t, 1, 90))
	if _, err := g.Generate(&corev3.Node{Id: "not-a-node-id"}); err == nil {
		t.Errorf("got no error for node id %q, want one", "not-a-node-id")
	}
}

// The generator hands translate.Inbound only the services with an endpoint
// on the proxy's IPs; the output must be what the whole registry gives.
func TestInboundRegistryIsEquivalent(t *testing.T) {
	st := greeterState(t, 1, 90)
	cases := []struct {
		name string
		ips  []string
	}{
		{"workload of both subsets", []string{"127.0.0.1"}},
		{"no workload", []string{"10.9.9.9"}},
		{"several IPs", []string{"10.9.9.9", "127.0.0.1"}},
		{"no IPs", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &translate.Proxy{ID: "sidecar~x~p.default~default.svc.cluster.local", Type: translate.SidecarProxy,
				Namespace: "default", IPs: tc.ips, Labels: map[string]string{"app": "greeter"}}
			full := translate.Input{Proxy: p, Config: st.cfg, Registry: st.reg, Mesh: st.mesh}
			part := full
			part.Registry = st.inboundRegistry(tc.ips)
			want, err := marshal(translate.Inbound(full))
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshal(translate.Inbound(part))
			if err != nil {
				t.Fatal(err)
			}
			for typ, wl := range want {
				if !equalLists(got[typ], wl) {
					t.Errorf("%s: got %d resources, want %d equal to the full registry's", server.ShortType(typ), len(got[typ]), len(wl))
				}
			}
			if len(got) != len(want) {
				t.Errorf("types: got %d, want %d", len(got), len(want))
			}
			hasLocal := false
			for _, r := range want[resourcev3.ClusterType] {
				hasLocal = hasLocal || r.Name == "inbound|9001||"
			}
			if wantLocal := len(tc.ips) > 0 && tc.ips[len(tc.ips)-1] == "127.0.0.1"; hasLocal != wantLocal {
				t.Errorf("inbound|9001|| cluster: got %v, want %v", hasLocal, wantLocal)
			}
		})
	}
	if n := len(st.inboundRegistry([]string{"127.0.0.1"}).Services); n != 1 {
		t.Errorf("services on 127.0.0.1: got %d, want 1 (greeter)", n)
	}
}

// The cache is keyed by what outbound translation reads: labels no selector
// names are shared, a locality is not.
func TestGeneratorKeysByOutboundProxy(t *testing.T) {
	g := newGenerator(translateFuncs{})
	g.setState(greeterState(t, 1, 90))
	withMeta := func(ip string, labels map[string]any, region string) *corev3.Node {
		n := node("default", ip)
		l, err := structpb.NewStruct(labels)
		if err != nil {
			t.Fatal(err)
		}
		n.Metadata.Fields["LABELS"] = structpb.NewStructValue(l)
		if region != "" {
			n.Locality = &corev3.Locality{Region: region}
		}
		return n
	}
	for _, n := range []*corev3.Node{
		withMeta("10.0.0.1", map[string]any{"pod-template-hash": "abc"}, ""),
		withMeta("10.0.0.2", map[string]any{"pod-template-hash": "def"}, ""),
		withMeta("10.0.0.3", nil, "eu-west"),
	} {
		if _, err := g.Generate(n); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(g.cache); got != 2 {
		t.Errorf("cache entries: got %d, want 2 (labels no selector names shared, another locality apart)", got)
	}
}
