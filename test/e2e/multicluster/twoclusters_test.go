package multicluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// TestMultiPrimaryRemoteSecrets: two clusters on one network, each with
// its trellisd; seed 004's worker has its primary pod in cluster1 and its
// burst pod in cluster2. Each cluster gets the other's remote secret
// (made by the trellis binary, applied as kubectl would), live: each
// trellisd then serves both endpoints, labelled with their cluster and
// network. Deleting a secret removes that cluster's endpoints; a cluster
// relabelled onto another network leaves the EDS of proxies on the first
// network (no east-west gateway, as Istio without one).
func TestMultiPrimaryRemoteSecrets(t *testing.T) {
	ctx := kubetest.Context(t)
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startCluster(t, ctx, "cluster2", "network1")
	runWorker(t, ctx, c1.env.Clients, "region1.zone1", map[string]string{"primary": "10.240.1.10"})
	runWorker(t, ctx, c2.env.Clients, "region2.zone1", map[string]string{"burst": "10.241.1.10"})
	n1, n2 := node("cluster1", "network1"), node("cluster2", "network1")

	waitFor(t, "each trellisd serving its own cluster's endpoint", func() bool {
		return addrs(eds(t, ctx, c1.xds, n1)) == "10.240.1.10:8080" && addrs(eds(t, ctx, c2.xds, n2)) == "10.241.1.10:8080"
	})

	// The secret trellis prints is Istio's format.
	out := createRemoteSecret(t, c2)
	var sec corev1.Secret
	if err := yaml.Unmarshal(out, &sec); err != nil {
		t.Fatalf("create-remote-secret output: %v\n%s", err, out)
	}
	if sec.Kind != "Secret" || sec.Name != "istio-remote-secret-cluster2" || sec.Namespace != "trellis-system" ||
		sec.Labels["istio/multiCluster"] != "true" || sec.Annotations["networking.istio.io/cluster"] != "cluster2" || len(sec.StringData) != 1 {
		t.Fatalf("remote secret: got kind %q name %q ns %q labels %v annotations %v keys %d, want Istio's remote secret for cluster2",
			sec.Kind, sec.Name, sec.Namespace, sec.Labels, sec.Annotations, len(sec.StringData))
	}
	kc, err := clientcmd.Load([]byte(sec.StringData["cluster2"]))
	if err != nil {
		t.Fatalf("the secret's kubeconfig: %v", err)
	}
	if kc.CurrentContext != "cluster2" || kc.Contexts["cluster2"] == nil || kc.Contexts["cluster2"].Cluster != "cluster2" ||
		kc.Contexts["cluster2"].AuthInfo != "cluster2" || kc.Clusters["cluster2"] == nil || kc.AuthInfos["cluster2"] == nil || kc.AuthInfos["cluster2"].Token == "" {
		t.Fatalf("kubeconfig: got %+v, want cluster, context and user named cluster2 with a token", kc)
	}
	if kc.Clusters["cluster2"].Server != c2.env.Config.Host {
		t.Errorf("kubeconfig server: got %q, want %q", kc.Clusters["cluster2"].Server, c2.env.Config.Host)
	}
	// The reader service account exists in cluster2, and its token is not
	// the admin's.
	if _, err := c2.env.Clients.Kube.CoreV1().ServiceAccounts("trellis-system").Get(ctx, install.ReaderServiceAccount, metav1.GetOptions{}); err != nil {
		t.Fatalf("reader service account in cluster2: %v", err)
	}
	if kc.AuthInfos["cluster2"].Token == c2.env.Config.BearerToken {
		t.Fatal("the remote secret carries the admin token, want the reader service account's")
	}

	// kubectl apply -f - in cluster1, without restarting its trellisd.
	kubectlApply(t, ctx, c1.env.Clients, out)
	want := []endpoint{
		{"10.240.1.10:8080", "cluster1", "network1", "region1/zone1"},
		{"10.241.1.10:8080", "cluster2", "network1", "region2/zone1"},
	}
	waitFor(t, "cluster1's trellisd serving cluster2's endpoint", func() bool { return len(eds(t, ctx, c1.xds, n1)) == 2 })
	if got := eds(t, ctx, c1.xds, n1); !equal(got, want) {
		t.Errorf("cluster1 EDS: got %+v, want %+v", got, want)
	}
	// cluster2 does not read cluster1 yet (multi-primary: each needs the
	// other's secret).
	if got := addrs(eds(t, ctx, c2.xds, n2)); got != "10.241.1.10:8080" {
		t.Errorf("cluster2 EDS before its secret: got %s, want only its own endpoint", got)
	}
	kubectlApply(t, ctx, c2.env.Clients, createRemoteSecret(t, c1))
	waitFor(t, "cluster2's trellisd serving cluster1's endpoint", func() bool { return len(eds(t, ctx, c2.xds, n2)) == 2 })
	if got := eds(t, ctx, c2.xds, n2); !equal(got, want) {
		t.Errorf("cluster2 EDS: got %+v, want %+v", got, want)
	}

	// Changes inside a joined cluster reach the other trellisd through
	// its informers: the slice deleted and created again.
	slices := c2.env.Clients.Kube.DiscoveryV1().EndpointSlices(appNS)
	es, err := slices.Get(ctx, "worker-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := slices.Delete(ctx, es.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster2's endpoint leaving cluster1's EDS after its slice is deleted", func() bool {
		return addrs(eds(t, ctx, c1.xds, n1)) == "10.240.1.10:8080"
	})
	es.ResourceVersion, es.UID = "", ""
	if _, err := slices.Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster2's endpoint back in cluster1's EDS", func() bool { return len(eds(t, ctx, c1.xds, n1)) == 2 })

	// Another network: cluster2's system namespace relabelled network2.
	// A proxy on network1 cannot reach it directly, and there is no
	// east-west gateway, so its endpoint leaves network1 proxies' EDS (as
	// in Istio without a gateway for network2); a proxy on network2 still
	// gets it.
	relabel := []byte(`{"metadata":{"labels":{"topology.istio.io/network":"network2"}}}`)
	if _, err := c2.env.Clients.Kube.CoreV1().Namespaces().Patch(ctx, "trellis-system", types.MergePatchType, relabel, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster2's endpoint on network2 left out for a network1 proxy", func() bool {
		return addrs(eds(t, ctx, c1.xds, n1)) == "10.240.1.10:8080"
	})
	n1net2 := node("cluster1", "network2")
	if got := eds(t, ctx, c1.xds, n1net2); len(got) != 1 || got[0] != (endpoint{"10.241.1.10:8080", "cluster2", "network2", "region2/zone1"}) {
		t.Errorf("cluster1 EDS for a network2 proxy: got %+v, want only cluster2's endpoint, on network2", got)
	}

	// Deleting the secret removes cluster2's endpoints from cluster1, live.
	if err := c1.env.Clients.Kube.CoreV1().Secrets("trellis-system").Delete(ctx, "istio-remote-secret-cluster2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster2's endpoints gone from cluster1 after its secret is deleted", func() bool {
		return len(eds(t, ctx, c1.xds, n1net2)) == 0
	})
	if got := addrs(eds(t, ctx, c1.xds, n1)); got != "10.240.1.10:8080" {
		t.Errorf("cluster1 EDS after deleting the secret: got %s, want its own endpoint", got)
	}
	// cluster2 still reads cluster1 (its own secret is untouched).
	if got := eds(t, ctx, c2.xds, node("cluster2", "network1")); len(got) != 1 || got[0].cluster != "cluster1" {
		t.Errorf("cluster2 EDS for a network1 proxy: got %+v, want cluster1's endpoint", got)
	}
}

func equal(a, b []endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPrimaryRemote: cluster2 is installed with the remote profile (no
// trellisd: its proxies use cluster1's, values.global.remotePilotAddress)
// and joined to cluster1 by its remote secret. cluster1's trellisd then
// serves both clusters' endpoints to proxies of either cluster.
func TestPrimaryRemote(t *testing.T) {
	ctx := kubetest.Context(t)
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startClusterProfile(t, ctx, "cluster2", "network1", "remote")
	runWorker(t, ctx, c1.env.Clients, "region1.zone1", map[string]string{"primary": "10.240.3.10"})
	runWorker(t, ctx, c2.env.Clients, "region2.zone1", map[string]string{"burst": "10.241.3.10"})
	// The remote profile made the reader service account already;
	// create-remote-secret reuses it.
	if _, err := c2.env.Clients.Kube.CoreV1().ServiceAccounts("trellis-system").Get(ctx, install.ReaderServiceAccount, metav1.GetOptions{}); err != nil {
		t.Fatalf("remote profile's reader service account: %v", err)
	}
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	want := []endpoint{
		{"10.240.3.10:8080", "cluster1", "network1", "region1/zone1"},
		{"10.241.3.10:8080", "cluster2", "network1", "region2/zone1"},
	}
	for _, n := range []struct{ cluster, what string }{{"cluster1", "a cluster1 proxy"}, {"cluster2", "a cluster2 (remote) proxy"}} {
		waitFor(t, "both endpoints for "+n.what, func() bool { return equal(eds(t, ctx, c1.xds, node(n.cluster, "network1")), want) })
	}
}
