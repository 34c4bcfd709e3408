package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestLoadFile(t *testing.T) {
	bs, err := Load("testdata/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ads, err := ADSTarget(bs)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node id", bs.GetNode().GetId(), "sidecar~10.1.0.7~frontend-6f7c.default~default.svc.cluster.local"},
		{"zone", bs.GetNode().GetLocality().GetZone(), "us-east1-b"},
		{"admin", AdminAddress(bs), "127.0.0.1:15000"},
		{"ads address", ads.Address, "127.0.0.1:15010"},
		{"ads delta", ads.Delta, true},
		{"listeners", len(bs.GetStaticResources().GetListeners()), 1},
		{"app label", bs.GetNode().GetMetadata().GetFields()["LABELS"].GetStructValue().GetFields()["app"].GetStringValue(), "frontend"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	// JSON works the same as YAML.
	js, err := protojson.Marshal(bs)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "b.json")
	os.WriteFile(p, js, 0o644)
	bs2, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(bs, bs2) {
		t.Errorf("got a different bootstrap from JSON, want the same")
	}
}

// adsOnly is a bootstrap with ADS to a static xds-grpc cluster and no node.
const adsOnly = `dynamic_resources:
  ads_config: {api_type: DELTA_GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}
  lds_config: {ads: {}}
  cds_config: {ads: {}}
static_resources:
  clusters:
  - name: xds-grpc
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]
`

// As in Envoy, a bootstrap with only static resources needs no node.
func TestStaticWithoutNode(t *testing.T) {
	bs, err := Parse([]byte(`admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]
`))
	if err != nil {
		t.Fatalf("got %v, want a static-only bootstrap without node accepted", err)
	}
	if bs.GetNode() != nil {
		t.Errorf("got node %v, want none", bs.GetNode())
	}
	withNode := "node: {id: sidecar~127.0.0.1~p.ns~ns.svc.cluster.local}\n" + adsOnly
	if _, err := Parse([]byte(withNode)); err != nil {
		t.Errorf("ADS with a node id: got %v, want it accepted", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"not yaml", "node: [", "parse yaml"},
		{"unknown field", "node: {id: x}\nbogus: 1", `unknown field "bogus"`},
		{"ads without node id", adsOnly, "node.id: must be set when dynamic_resources is"},
		{"bad admin ip", "node: {id: x}\nadmin: {address: {socket_address: {address: localhost, port_value: 1}}}", `admin.address: socket_address.address: "localhost" is not an IP address`},
		{"missing ads cluster", "node: {id: x}\ndynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: nope}}]}}", `no static cluster named "nope"`},
		{"rest api", "node: {id: x}\ndynamic_resources: {ads_config: {api_type: REST}}", "api_type: REST is not supported"},
		{"duration as ms", "node: {id: x}\nstatic_resources: {clusters: [{name: a, connect_timeout: 500ms}]}", "decode"},
		{"proto validation", "node: {id: x}\nstatic_resources: {clusters: [{name: ''}]}", "Name"},
		{"static EDS cluster without ADS", "static_resources: {clusters: [{name: a, type: EDS, eds_cluster_config: {eds_config: {ads: {}}}}]}", "static_resources.clusters[0].eds_cluster_config: an EDS cluster needs dynamic_resources.ads_config"},
		{"duplicate cluster", "node: {id: x}\nstatic_resources: {clusters: [{name: a}, {name: a}]}", `static_resources.clusters[1].name: duplicate cluster name "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
	if _, err := Load("testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "read bootstrap") {
		t.Errorf("got %v, want a read error", err)
	}
}

func TestFromFlags(t *testing.T) {
	bs, err := FromFlags(Options{IP: "10.1.0.9", PodName: "bill-v1-abc", Namespace: "shop", Cluster: "bill.shop",
		Labels: map[string]string{"app": "bill", "version": "v1"}, ServiceAccount: "bill", WorkloadName: "bill-v1",
		XDSAddress: "127.0.0.1:15010", AdminAddress: "127.0.0.1:0", Zone: "z1", Metadata: map[string]string{"MESH_EXTRA": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := bs.GetNode().GetId(); got != "sidecar~10.1.0.9~bill-v1-abc.shop~shop.svc.cluster.local" {
		t.Errorf("got node id %q, want Istio's form", got)
	}
	ads, err := ADSTarget(bs)
	if err != nil || ads.Address != "127.0.0.1:15010" || !ads.Delta {
		t.Errorf("got %+v %v, want delta ADS at 127.0.0.1:15010", ads, err)
	}
	md := bs.GetNode().GetMetadata().GetFields()
	if md["NAMESPACE"].GetStringValue() != "shop" || md["SERVICE_ACCOUNT"].GetStringValue() != "bill" || md["INTERCEPTION_MODE"].GetStringValue() != "REDIRECT" ||
		md["LABELS"].GetStructValue().GetFields()["version"].GetStringValue() != "v1" || md["MESH_EXTRA"].GetStringValue() != "1" {
		t.Errorf("got metadata %v, want Istio's keys", md)
	}
	// One code path: the built bootstrap survives a YAML round trip.
	js, _ := protojson.Marshal(bs)
	again, err := Parse(js)
	if err != nil || !proto.Equal(again, bs) {
		t.Errorf("round trip: got %v, want an equal bootstrap", err)
	}
	sotw, _ := FromFlags(Options{SotW: true, Type: "router", XDSAddress: "trellisd.istio-system:15010"})
	if a, _ := ADSTarget(sotw); a.Delta || a.Address != "trellisd.istio-system:15010" || !strings.HasPrefix(sotw.GetNode().GetId(), "router~") {
		t.Errorf("got %+v node %s, want SotW router to the DNS name", a, sotw.GetNode().GetId())
	}
	for _, bad := range []Options{{Type: "gateway"}, {XDSAddress: "nope"}, {AdminAddress: "localhost:15000"}} {
		if _, err := FromFlags(bad); err == nil {
			t.Errorf("FromFlags(%+v): got nil, want an error", bad)
		}
	}
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{"POD_NAME": "p", "POD_NAMESPACE": "ns", "INSTANCE_IP": "10.0.0.2", "PILOT_ADDRESS": "127.0.0.1:15010",
		"ISTIO_META_WORKLOAD_NAME": "w", "ISTIO_META_DNS_CAPTURE": "true", "ISTIO_METAJSON_LABELS": `{"app":"bill","version":"v2"}`}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	o := OptionsFromEnv(func(k string) string { return env[k] }, environ)
	if o.PodName != "p" || o.Namespace != "ns" || o.IP != "10.0.0.2" || o.XDSAddress != "127.0.0.1:15010" || o.WorkloadName != "w" ||
		o.Metadata["DNS_CAPTURE"] != "true" || o.Labels["version"] != "v2" || o.Labels["app"] != "bill" {
		t.Errorf("got %+v, want the environment's values", o)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("testdata/sidecar.yaml")
	f.Add(b)
	f.Add([]byte(`{"node":{"id":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := Parse(data)
		if err != nil {
			return
		}
		if bs.GetDynamicResources() != nil && bs.GetNode().GetId() == "" {
			t.Fatalf("got a bootstrap with dynamic_resources and no node id accepted")
		}
		AdminAddress(bs)
	})
}
