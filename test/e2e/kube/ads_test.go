package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
)

// sidecarNode is the xDS node the injected proxy of pod p sends (see
// docs/xds-contract.md).
func sidecarNode(p *corev1.Pod) *corev3.Node {
	labels := map[string]any{}
	for k, v := range p.Labels {
		labels[k] = v
	}
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": p.Namespace, "LABELS": labels, "INSTANCE_IPS": p.Status.PodIP,
		"SERVICE_ACCOUNT": "default", "WORKLOAD_NAME": strings.TrimSuffix(p.Name, "-5c9f7-a"), "CLUSTER_ID": "Kubernetes",
		"INTERCEPTION_MODE": "REDIRECT",
	})
	return &corev3.Node{
		Id:       "sidecar~" + p.Status.PodIP + "~" + p.Name + "." + p.Namespace + "~" + p.Namespace + ".svc.cluster.local",
		Cluster:  p.Labels["app"] + "." + p.Namespace,
		Metadata: md,
	}
}

// fetch opens one SotW ADS stream, asks for names of one type and returns
// the first response's resources.
func fetch(t *testing.T, ctx context.Context, addr string, node *corev3.Node, typeURL string, names ...string) []*anypb.Any {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("ads stream: %v", err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		t.Fatalf("ads send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("ads recv %s: %v", typeURL, err)
	}
	return resp.Resources
}

func fetchRoutes(t *testing.T, ctx context.Context, addr string, node *corev3.Node, names ...string) []*routev3.RouteConfiguration {
	t.Helper()
	var out []*routev3.RouteConfiguration
	for _, a := range fetch(t, ctx, addr, node, resourcev3.RouteType, names...) {
		rc := &routev3.RouteConfiguration{}
		if err := anypb.UnmarshalTo(a, rc, proto.UnmarshalOptions{}); err != nil {
			t.Fatal(err)
		}
		out = append(out, rc)
	}
	return out
}

func fetchEndpoints(t *testing.T, ctx context.Context, addr string, node *corev3.Node, names ...string) []*endpointv3.ClusterLoadAssignment {
	t.Helper()
	var out []*endpointv3.ClusterLoadAssignment
	for _, a := range fetch(t, ctx, addr, node, resourcev3.EndpointType, names...) {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := anypb.UnmarshalTo(a, cla, proto.UnmarshalOptions{}); err != nil {
			t.Fatal(err)
		}
		out = append(out, cla)
	}
	return out
}
