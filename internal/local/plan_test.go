package local

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}

func billingPlan(t *testing.T) *Plan {
	t.Helper()
	spec, err := LoadSpec("testdata/billing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanPlacesWorkloads(t *testing.T) {
	p := billingPlan(t)
	if p.Bridge != "trellis0" || p.HostIP.String() != "10.244.0.1" || p.XDSAddress() != "10.244.0.1:15010" {
		t.Errorf("got bridge %s host %s xds %s, want trellis0 10.244.0.1 10.244.0.1:15010", p.Bridge, p.HostIP, p.XDSAddress())
	}
	tests := []struct {
		i                       int
		netns, veth, ip, nodeID string
		ports                   int
	}{
		{0, "trellis-front-tomcat-v1", "trellisv0", "10.244.0.10", "sidecar~10.244.0.10~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local", 0},
		{1, "trellis-bill-service-v1", "trellisv1", "10.244.0.11", "sidecar~10.244.0.11~bill-service-v1.istio-demo~istio-demo.svc.cluster.local", 1},
		{2, "trellis-bill-service-v2", "trellisv2", "10.244.0.12", "sidecar~10.244.0.12~bill-service-v2.istio-demo~istio-demo.svc.cluster.local", 1},
	}
	for _, tt := range tests {
		w := p.Workloads[tt.i]
		if w.Netns != tt.netns || w.HostVeth != tt.veth || w.IP.String() != tt.ip || w.NodeID("cluster.local") != tt.nodeID || len(w.InboundPorts) != tt.ports {
			t.Errorf("workload %d: got %s %s %s %s %v, want %s %s %s %s %d ports", tt.i, w.Netns, w.HostVeth, w.IP, w.NodeID("cluster.local"), w.InboundPorts, tt.netns, tt.veth, tt.ip, tt.nodeID, tt.ports)
		}
	}
	if got := p.Services[0].VIP.String(); got != "10.245.0.10" {
		t.Errorf("vip: got %s, want 10.245.0.10", got)
	}
}

func TestPlanGolden(t *testing.T) {
	p := billingPlan(t)
	cfg, err := p.MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "billing.mesh.golden.yaml"), string(cfg))
	golden(t, filepath.Join("testdata", "billing.hosts.golden"), p.Hosts(p.Workloads[0]))
}

// The generated registration must be accepted by trellisd's parser.
func TestMeshConfigParses(t *testing.T) {
	cfg, err := billingPlan(t).MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	res, err := config.Parse(cfg, "billing.mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snap := config.NewSnapshot(res.Resources)
	if got := len(snap.List(config.KindServiceEntry)); got != 1 {
		t.Errorf("got %d ServiceEntries, want 1", got)
	}
	if got := len(snap.List(config.KindWorkloadEntry)); got != 3 {
		t.Errorf("got %d WorkloadEntries, want 3", got)
	}
}

func TestSpecValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown field", "workloads: [{name: a, lables: {}}]", "unknown field"},
		{"bad name", "workloads: [{name: A_b}]", "workloads[0].name: \"A_b\" is not a DNS label"},
		{"no workloads", "services: []", "workloads: at least one workload is required"},
		{"bad port", "services: [{name: s, ports: [{port: 0}], selector: {a: b}}]\nworkloads: [{name: a}]", "services[0].ports[0].port: got 0"},
		{"no selector", "services: [{name: s, ports: [{port: 80}]}]\nworkloads: [{name: a}]", "services[0].selector: required"},
		{"duplicate", "workloads: [{name: a}, {name: a}]", "workloads[1].name: duplicate workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spec.yaml")
			os.WriteFile(path, []byte(tt.yaml), 0o644)
			_, err := LoadSpec(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestPlanRejectsBadOptions(t *testing.T) {
	spec := &Spec{Workloads: []Workload{{Name: "a"}}}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"long prefix", Options{Prefix: "waytoolongprefix"}, "longer than 8"},
		{"overlap", Options{Subnet: netip.MustParsePrefix("10.0.0.0/16"), VIPSubnet: netip.MustParsePrefix("10.0.1.0/24")}, "overlaps"},
		{"too small", Options{Subnet: netip.MustParsePrefix("10.0.0.0/29")}, "too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(spec, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Two networks: a bridge each, workloads placed on their network's
// subnet, the east-west gateway a router joined to the other bridge and
// registered at that address, labelled with its network.
func TestPlanTwoNetworks(t *testing.T) {
	spec := &Spec{
		Networks: []Network{{Name: "network1", Subnet: "10.186.1.0/24"}, {Name: "network2", Subnet: "10.187.1.0/24"}},
		Services: []Service{{Name: "worker", Ports: []ServicePort{{Port: 80}}, Selector: map[string]string{"app": "worker"}}},
		Workloads: []Workload{
			{Name: "front", Labels: map[string]string{"app": "front"}},
			{Name: "burst", Network: "network2", Labels: map[string]string{"app": "worker"}, Command: []string{"x"}},
			{Name: "gw2", Network: "network2", EastWestGateway: true, Labels: map[string]string{"istio": "eastwestgateway"}},
		},
	}
	p, err := NewPlan(spec, Options{Prefix: "tp", VIPSubnet: netip.MustParsePrefix("10.186.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Networks) != 2 || p.Networks[0].Bridge != "tp0" || p.Networks[1].Bridge != "tpb1" || p.HostIP.String() != "10.186.1.1" {
		t.Fatalf("networks %+v, host %s", p.Networks, p.HostIP)
	}
	front, burst, gw := p.Workloads[0], p.Workloads[1], p.Workloads[2]
	if front.IP.String() != "10.186.1.10" || front.Net.Name != "network1" || burst.IP.String() != "10.187.1.10" || burst.Net.Bridge != "tpb1" {
		t.Errorf("front %s %s, burst %s %s", front.IP, front.Net.Name, burst.IP, burst.Net.Bridge)
	}
	if gw.IP.String() != "10.187.1.11" || gw.ExternalIP.String() != "10.186.1.11" || gw.ExternalNet.Bridge != "tp0" || gw.ExternalVeth != "tpv3" ||
		!strings.HasPrefix(gw.NodeID("cluster.local"), "router~10.187.1.11~gw2.") {
		t.Errorf("gateway %s ext %s on %s via %s, node %s", gw.IP, gw.ExternalIP, gw.ExternalNet.Bridge, gw.ExternalVeth, gw.NodeID("cluster.local"))
	}
	cfg, err := p.MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	res, err := config.Parse(cfg, "two-networks.yaml")
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("%v %v", err, res.Errors)
	}
	for _, want := range []string{"network: network2", "topology.istio.io/network: network2", "address: 10.186.1.11", "number: 15443"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("mesh config lacks %q:\n%s", want, cfg)
		}
	}
	ses := 0
	for _, r := range res.Resources {
		if r.Kind == config.KindServiceEntry {
			ses++
		}
	}
	if ses != 2 {
		t.Errorf("%d ServiceEntries, want the service's and the gateway's", ses)
	}

	bad := *spec
	bad.Workloads = append([]Workload(nil), spec.Workloads...)
	bad.Workloads[0].Network = "network9"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `workloads[0].network: "network9" is not one of networks[].name`) {
		t.Errorf("unknown network: %v", err)
	}
	one := &Spec{Workloads: []Workload{{Name: "gw", EastWestGateway: true}}}
	if err := one.Validate(); err == nil || !strings.Contains(err.Error(), "workloads[0].eastWestGateway: needs two networks") {
		t.Errorf("gateway without networks: %v", err)
	}
}
