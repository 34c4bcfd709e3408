package translate

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// scaleInput is a mesh of n services in 10 namespaces, each with 3
// endpoints on one HTTP port; every service has a DestinationRule with two
// subsets and a VirtualService splitting 90/10 with retries and a timeout.
func scaleInput(n int) Input {
	var rs []*config.Resource
	var svcs []*registry.Service
	eps := map[string][]*registry.Endpoint{}
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns%d", i%10)
		name := fmt.Sprintf("svc%d", i)
		host := name + "." + ns + ".svc.cluster.local"
		svcs = append(svcs, &registry.Service{
			Hostname: host, Name: name, Namespace: ns,
			Addresses: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Ports:     []registry.Port{{Name: "http", Number: 8080, Protocol: registry.HTTP}},
		})
		for j := 0; j < 3; j++ {
			eps[host] = append(eps[host], &registry.Endpoint{
				Service: host, ServicePort: 8080, Address: fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, j+1), Port: 8080,
				Labels: map[string]string{"app": name, "version": fmt.Sprintf("v%d", j%2+1)}, Workload: fmt.Sprintf("%s-%d", name, j),
				Namespace: ns, Healthy: true,
			})
		}
		rs = append(rs, &config.Resource{Kind: config.KindDestinationRule, Meta: config.Meta{Name: name, Namespace: ns}, Spec: &networking.DestinationRule{
			Host:    name,
			Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}},
		}})
		rs = append(rs, &config.Resource{Kind: config.KindVirtualService, Meta: config.Meta{Name: name, Namespace: ns}, Spec: &networking.VirtualService{
			Hosts: []string{name},
			Http: []*networking.HTTPRoute{{
				Timeout: durationpb.New(5e9),
				Retries: &networking.HTTPRetry{Attempts: 3, RetryOn: "5xx"},
				Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: name, Subset: "v1"}, Weight: 90},
					{Destination: &networking.Destination{Host: name, Subset: "v2"}, Weight: 10},
				},
			}},
		}})
	}
	return Input{
		Proxy:    &Proxy{Type: SidecarProxy, Namespace: "ns0", IPs: []string{"10.1.0.1"}, Labels: map[string]string{"app": "svc0"}},
		Config:   config.NewSnapshot(rs),
		Registry: registry.NewSnapshot(svcs, eps),
		Mesh:     DefaultMesh(),
	}
}

func BenchmarkOutbound1000(b *testing.B) {
	in := scaleInput(1000)
	b.ReportAllocs()
	for b.Loop() {
		Outbound(in)
	}
}

func BenchmarkInbound1000(b *testing.B) {
	in := scaleInput(1000)
	b.ReportAllocs()
	for b.Loop() {
		Inbound(in)
	}
}

func BenchmarkOutboundProxyKey1000(b *testing.B) {
	in := scaleInput(1000)
	b.ReportAllocs()
	for b.Loop() {
		_ = NewOutboundProxy(in).Key()
	}
}

func BenchmarkEndpoints1000(b *testing.B) {
	in := scaleInput(1000)
	names := Outbound(in).EDSClusterNames()
	b.ReportAllocs()
	for b.Loop() {
		Endpoints(in, names)
	}
}

func TestScaleInputConsistent(t *testing.T) {
	in := scaleInput(50)
	out := Translate(in)
	checkConsistent(t, out)
	if got, want := len(out.Clusters), 50*3+3+1; got != want {
		t.Errorf("got %d clusters, want %d (3 per service + passthrough, blackhole, inbound passthrough + inbound|8080||)", got, want)
	}
}

// BenchmarkTranslateBillService is one sidecar of the bill-service scenario,
// the size of a small demo mesh.
func BenchmarkTranslateBillService(b *testing.B) {
	in := loadCase(b, "testdata/bill-service")
	b.ReportAllocs()
	for b.Loop() {
		Translate(in)
	}
}
