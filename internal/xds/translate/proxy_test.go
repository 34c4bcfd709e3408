package translate

import (
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestProxyFromNode(t *testing.T) {
	md := func(kv map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(kv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name    string
		node    *corev3.Node
		want    *Proxy
		wantErr string
	}{
		{
			name: "sidecar id only",
			node: &corev3.Node{Id: "sidecar~10.0.0.5~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local"},
			want: &Proxy{ID: "sidecar~10.0.0.5~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local", Type: SidecarProxy,
				IPs: []string{"10.0.0.5"}, Name: "front-tomcat-v1", Namespace: "istio-demo"},
		},
		{
			name: "router with metadata and locality",
			node: &corev3.Node{
				Id:       "router~10.0.0.100~istio-ingressgateway-5d4f.istio-system~istio-system.svc.cluster.local",
				Locality: &corev3.Locality{Region: "us-east1", Zone: "b"},
				Metadata: md(map[string]any{
					"LABELS":          map[string]any{"istio": "ingressgateway"},
					"INSTANCE_IPS":    "10.0.0.100,fd00::1",
					"SERVICE_ACCOUNT": "istio-ingressgateway",
					"CLUSTER_ID":      "Kubernetes",
					"NETWORK":         "net1",
				}),
			},
			want: &Proxy{ID: "router~10.0.0.100~istio-ingressgateway-5d4f.istio-system~istio-system.svc.cluster.local", Type: RouterProxy,
				IPs: []string{"10.0.0.100", "fd00::1"}, Name: "istio-ingressgateway-5d4f", Namespace: "istio-system",
				Labels: map[string]string{"istio": "ingressgateway"}, ServiceAccount: "istio-ingressgateway", Cluster: "Kubernetes",
				Network: "net1", Locality: "us-east1/b"},
		},
		{
			name: "grpc generator, namespace from metadata",
			node: &corev3.Node{Id: "sidecar~10.0.0.9~client~default.svc.cluster.local", Metadata: md(map[string]any{"GENERATOR": "grpc", "NAMESPACE": "apps"})},
			want: &Proxy{ID: "sidecar~10.0.0.9~client~default.svc.cluster.local", Type: SidecarProxy, IPs: []string{"10.0.0.9"},
				Name: "client", Namespace: "apps", Generator: "grpc"},
		},
		{
			name: "locality from the istio-locality label",
			node: &corev3.Node{Id: "sidecar~10.0.0.9~front.apps~apps.svc.cluster.local", Metadata: md(map[string]any{"LABELS": map[string]any{"istio-locality": "region1.zone1"}})},
			want: &Proxy{ID: "sidecar~10.0.0.9~front.apps~apps.svc.cluster.local", Type: SidecarProxy, IPs: []string{"10.0.0.9"},
				Name: "front", Namespace: "apps", Labels: map[string]string{"istio-locality": "region1.zone1"}, Locality: "region1/zone1"},
		},
		{name: "nil node", node: nil, wantErr: "node: missing"},
		{name: "too few fields", node: &corev3.Node{Id: "sidecar~10.0.0.5"}, wantErr: "got 2 '~'-separated fields, want 4"},
		{name: "bad type", node: &corev3.Node{Id: "gateway~10.0.0.5~a.b~b.svc.cluster.local"}, wantErr: `type "gateway" is not one of`},
		{name: "bad ip", node: &corev3.Node{Id: "sidecar~ten~a.b~b.svc.cluster.local"}, wantErr: `IP field "ten" is not an IP address`},
		{name: "bad instance ip", node: &corev3.Node{Id: "sidecar~10.0.0.1~a.b~b.svc.cluster.local", Metadata: md(map[string]any{"INSTANCE_IPS": "x"})}, wantErr: "node.metadata.INSTANCE_IPS"},
		{name: "labels not a struct", node: &corev3.Node{Id: "sidecar~10.0.0.1~a.b~b.svc.cluster.local", Metadata: md(map[string]any{"LABELS": "app=x"})}, wantErr: "node.metadata.LABELS"},
		{name: "no namespace", node: &corev3.Node{Id: "sidecar~10.0.0.1~pod~"}, wantErr: "no namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProxyFromNode(tt.node)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzProxyFromNode(f *testing.F) {
	f.Add("sidecar~10.0.0.5~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local", "10.0.0.5")
	f.Add("router~~~", "")
	f.Add("~~~~", ",,")
	f.Fuzz(func(t *testing.T, id, ips string) {
		n := &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"INSTANCE_IPS": structpb.NewStringValue(ips)}}}
		p, err := ProxyFromNode(n)
		if err != nil {
			return
		}
		if p.Type != SidecarProxy && p.Type != RouterProxy {
			t.Fatalf("accepted type %q", p.Type)
		}
		if p.Namespace == "" {
			t.Fatal("accepted a node with no namespace")
		}
	})
}
