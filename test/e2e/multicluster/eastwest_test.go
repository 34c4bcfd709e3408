package multicluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// TestEastWestGatewayAcrossClusters: cluster1 on network1, cluster2 on
// network2 installed with its east-west gateway (install's
// istio-eastwestgateway), cluster1's trellisd reading cluster2 by its
// remote secret. Until the gateway's LoadBalancer has an address,
// network1 proxies are not sent the burst pod (no way to reach it); once
// the load balancer reports one (set as a cloud controller would), they
// are sent that address on 15443 in the burst pod's place, labelled
// network2 and with the pod's locality. A network2 proxy gets the burst
// pod itself, and not cluster1's pod (network1 has no gateway).
func TestEastWestGatewayAcrossClusters(t *testing.T) {
	ctx := kubetest.Context(t)
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startClusterWith(t, ctx, "cluster2", "network2", "minimal",
		"components.ingressGateways[1].name="+install.EastWestGatewayName, "components.ingressGateways[1].enabled=true")
	runWorker(t, ctx, c1.env.Clients, "region1.zone1", map[string]string{"primary": "10.240.5.10"})
	runWorker(t, ctx, c2.env.Clients, "region2.zone1", map[string]string{"burst": "10.241.5.10"})
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	n1 := node("cluster1", "network1")

	waitFor(t, "cluster1's trellisd reading cluster2 (the burst pod served to a network2 proxy)", func() bool {
		got := eds(t, ctx, c1.xds, node("cluster1", "network2"))
		return len(got) == 1 && got[0] == endpoint{"10.241.5.10:8080", "cluster2", "network2", "region2/zone1"}
	})
	if got := addrs(eds(t, ctx, c1.xds, n1)); got != "10.240.5.10:8080" {
		t.Fatalf("network1 proxy before the gateway has an address: got %s, want only the primary pod", got)
	}

	svcs := c2.env.Clients.Kube.CoreV1().Services("trellis-system")
	gw, err := svcs.Get(ctx, install.EastWestGatewayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gw.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.50"}}
	if _, err := svcs.UpdateStatus(ctx, gw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []endpoint{
		{"10.240.5.10:8080", "cluster1", "network1", "region1/zone1"},
		{"192.0.2.50:15443", "", "network2", "region2/zone1"},
	}
	waitFor(t, "the burst pod replaced by cluster2's gateway for a network1 proxy", func() bool { return equal(eds(t, ctx, c1.xds, n1), want) })
}
