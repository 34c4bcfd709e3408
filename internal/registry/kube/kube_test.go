package kube

import (
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/registry"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestProtocol(t *testing.T) {
	cases := []struct {
		name, port, app string
		want            registry.Protocol
	}{
		{"bare http", "http", "", registry.HTTP},
		{"http prefix", "http-web", "", registry.HTTP},
		{"case", "HTTP-Web", "", registry.HTTP},
		{"http2", "http2-x", "", registry.HTTP2},
		{"grpc", "grpc-api", "", registry.GRPC},
		{"grpc-web longest prefix", "grpc-web-ui", "", registry.HTTP},
		{"tcp", "tcp-db", "", registry.TCP},
		{"tls", "tls", "", registry.TLS},
		{"https", "https-admin", "", registry.HTTPS},
		{"mongo", "mongo", "", registry.Mongo},
		{"redis", "redis-cache", "", registry.Redis},
		{"no dash is not a prefix", "httpx", "", registry.Unknown},
		{"unnamed", "", "", registry.Unknown},
		{"appProtocol wins", "tcp-x", "http", registry.HTTP},
		{"appProtocol h2c", "web", "kubernetes.io/h2c", registry.HTTP2},
		{"appProtocol grpc", "", "grpc", registry.GRPC},
		{"unknown appProtocol falls back to name", "http", "example.com/custom", registry.HTTP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Protocol(c.port, c.app); got != c.want {
				t.Errorf("Protocol(%q, %q): got %q, want %q", c.port, c.app, got, c.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// Bill-service scenario objects, as kubectl apply plus the (absent)
// controllers would leave them.
func createBillService(t *testing.T, ctx context.Context, kc kubernetes.Interface, ns string) {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}}, metav1.CreateOptions{}))
	must(kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: ns + "-node", Labels: map[string]string{
		"topology.kubernetes.io/region": "eu-west", "topology.kubernetes.io/zone": "eu-west-1a"}}}, metav1.CreateOptions{}))
	must(kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bill-service", Labels: map[string]string{"service": "bill-service"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"service": "bill-service"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9999, TargetPort: intstr.FromInt32(80)}}},
	}, metav1.CreateOptions{}))
	must(kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "tcp-pg", Port: 5432}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{}))
	must(kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "search"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "search.example.com",
			Ports: []corev1.ServicePort{{Name: "https", Port: 443}}},
	}, metav1.CreateOptions{}))
	for _, v := range []string{"v1", "v2"} {
		must(kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "bill-service-" + v + "-7d9f8-abcde", Labels: map[string]string{"service": "bill-service", "version": v, "pod-template-hash": "7d9f8"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bill-service-" + v + "-7d9f8", UID: "u-" + "v", Controller: ptr(true)}}},
			Spec: corev1.PodSpec{ServiceAccountName: "bill", NodeName: ns + "-node", Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		}, metav1.CreateOptions{}))
	}
	must(kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "bill-service-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "bill-service"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(80)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "bill-service-v1-7d9f8-abcde", Namespace: ns}},
			{Addresses: []string{"10.1.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "bill-service-v2-7d9f8-abcde", Namespace: ns}},
		},
	}, metav1.CreateOptions{}))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegistryFromAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	kc := env.Clients.Kube
	createBillService(t, ctx, kc, "reg-demo")

	r := New(kc, Options{Coalesce: 10 * time.Millisecond})
	changed := make(chan struct{}, 100)
	r.Subscribe(func() { changed <- struct{}{} })
	if err := r.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	snap := r.Snapshot()

	bill := snap.Service("bill-service.reg-demo.svc.cluster.local")
	if bill == nil {
		t.Fatalf("got no bill-service in %d services", len(snap.Services))
	}
	if len(bill.Addresses) != 1 || bill.Resolution != registry.ResolutionStatic {
		t.Errorf("bill-service: got addresses %v resolution %v, want one ClusterIP, static", bill.Addresses, bill.Resolution)
	}
	if want := []registry.Port{{Name: "http", Number: 9999, Protocol: registry.HTTP, TargetPort: 80}}; !reflect.DeepEqual(bill.Ports, want) {
		t.Errorf("bill-service ports: got %+v, want %+v", bill.Ports, want)
	}
	eps := snap.Endpoints[bill.Hostname]
	if len(eps) != 2 {
		t.Fatalf("bill-service endpoints: got %d, want 2", len(eps))
	}
	e1 := eps[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"address", e1.Address, "10.1.0.1"},
		{"port", e1.Port, uint32(80)},
		{"service port", e1.ServicePort, uint32(9999)},
		{"version label", e1.Labels["version"], "v1"},
		{"workload", e1.Workload, "bill-service-v1"},
		{"service account", e1.ServiceAccount, "bill"},
		{"locality", e1.Locality, "eu-west/eu-west-1a/"},
		{"cluster", e1.Cluster, "Kubernetes"},
		{"healthy", e1.Healthy, true},
		{"not ready endpoint", eps[1].Healthy, false},
		{"v2 label", eps[1].Labels["version"], "v2"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	db := snap.Service("db.reg-demo.svc.cluster.local")
	if db == nil || db.Resolution != registry.ResolutionNone || len(db.Addresses) != 0 {
		t.Errorf("headless db: got %+v, want resolution none without addresses", db)
	} else if len(db.Ports) != 1 || db.Ports[0].Protocol != registry.TCP {
		t.Errorf("headless db ports: got %+v, want only tcp-pg (UDP dropped)", db.Ports)
	}
	search := snap.Service("search.reg-demo.svc.cluster.local")
	if search == nil || search.Resolution != registry.ResolutionDNS {
		t.Fatalf("externalname: got %+v, want DNS resolution", search)
	}
	if se := snap.Endpoints[search.Hostname]; len(se) != 1 || se[0].Address != "search.example.com" || se[0].Port != 443 {
		t.Errorf("externalname endpoints: got %+v", se)
	}

	// A pod relabelled moves its endpoint's subset labels.
	p, err := kc.CoreV1().Pods("reg-demo").Get(ctx, "bill-service-v2-7d9f8-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["version"] = "v3"
	if _, err := kc.CoreV1().Pods("reg-demo").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "relabelled endpoint", func() bool {
		e := r.Snapshot().Endpoints[bill.Hostname]
		return len(e) == 2 && e[1].Labels["version"] == "v3"
	})
	select {
	case <-changed:
	default:
		t.Errorf("subscriber not called after a change")
	}

	// Deleting the Service removes it.
	if err := kc.CoreV1().Services("reg-demo").Delete(ctx, "bill-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "service removal", func() bool { return r.Snapshot().Service(bill.Hostname) == nil })

	labels, err := r.NamespaceLabels(ctx, "reg-demo")
	if err != nil || labels["istio-injection"] != "enabled" {
		t.Errorf("namespace labels: got %v, %v; want istio-injection=enabled", labels, err)
	}
}
