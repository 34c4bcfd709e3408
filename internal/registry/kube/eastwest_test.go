package kube

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// An east-west gateway's LoadBalancer Service: its network label and,
// once the load balancer is provisioned (status.loadBalancer.ingress),
// its external addresses reach the registry, where the translator finds
// the network's gateway.
func TestEastWestGatewayService(t *testing.T) {
	ctx := kubetest.Context(t)
	kc := kubetest.Shared(t).Clients.Kube
	ns := "ew-gateway"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-eastwestgateway", Labels: map[string]string{"topology.istio.io/network": "network2"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"istio": "eastwestgateway"},
			ExternalIPs: []string{"192.0.2.20"},
			Ports:       []corev1.ServicePort{{Name: "tls", Port: 15443, TargetPort: intstr.FromInt32(15443)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := New(kc, Options{Coalesce: 10 * time.Millisecond})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	host := "istio-eastwestgateway." + ns + ".svc.cluster.local"
	waitFor(t, "gateway service", func() bool { return r.Snapshot().Service(host) != nil })
	got := r.Snapshot().Service(host)
	if got.Labels["topology.istio.io/network"] != "network2" || !reflect.DeepEqual(got.ExternalAddresses, []string{"192.0.2.20"}) {
		t.Errorf("before the load balancer: labels %v external %v", got.Labels, got.ExternalAddresses)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	if _, err := kc.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "load balancer address", func() bool {
		s := r.Snapshot().Service(host)
		return s != nil && reflect.DeepEqual(s.ExternalAddresses, []string{"192.0.2.10", "192.0.2.20"})
	})
}
