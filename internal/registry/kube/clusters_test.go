package kube

import (
	"errors"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// TestRemoteClusterBySecret joins a second API server through a Secret
// labelled istio/multiCluster=true, as the burst scenario's two clusters
// are joined.
func TestRemoteClusterBySecret(t *testing.T) {
	local := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	remote, err := kubetest.Start()
	if errors.Is(err, kubetest.ErrNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remote.Stop)
	createBillService(t, ctx, remote.Clients.Kube, "burst")

	kc, err := os.ReadFile(remote.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.Clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mc-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := NewClusters(local.Clients.Kube, "mc-system", Options{Coalesce: 10 * time.Millisecond})
	changed := make(chan struct{}, 10)
	cl.Subscribe(func() { changed <- struct{}{} })
	if err := cl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(cl.Snapshot().Services); n != 0 {
		t.Fatalf("got %d services before any secret, want 0", n)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-burst", Labels: map[string]string{MultiClusterLabel: "true"}},
		Data: map[string][]byte{"cluster-burst": kc}}
	if _, err := local.Clients.Kube.CoreV1().Secrets("mc-system").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host := "bill-service.burst.svc.cluster.local"
	waitFor(t, "remote cluster's service", func() bool { return cl.Snapshot().Service(host) != nil })
	eps := cl.Snapshot().Endpoints[host]
	if len(eps) != 2 || eps[0].Cluster != "cluster-burst" || eps[0].Labels["version"] != "v1" {
		t.Fatalf("remote endpoints: got %d (%+v), want 2 in cluster-burst with pod labels", len(eps), eps)
	}
	if joined, failed := cl.Status(); len(joined) != 1 || joined[0] != "cluster-burst" || len(failed) != 0 {
		t.Errorf("status: got %v %v", joined, failed)
	}

	// A change in the remote cluster reaches the merged snapshot.
	if err := remote.Clients.Kube.CoreV1().Services("burst").Delete(ctx, "bill-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "remote deletion", func() bool { return cl.Snapshot().Service(host) == nil })

	// A broken kubeconfig is reported, not fatal; deleting the secret
	// leaves the cluster.
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-bad", Labels: map[string]string{MultiClusterLabel: "true"}},
		Data: map[string][]byte{"cluster-bad": []byte("not a kubeconfig")}}
	if _, err := local.Clients.Kube.CoreV1().Secrets("mc-system").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bad cluster reported", func() bool { _, f := cl.Status(); return f["cluster-bad"] != "" })
	if err := local.Clients.Kube.CoreV1().Secrets("mc-system").Delete(ctx, "istio-remote-secret-burst", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster left", func() bool { j, _ := cl.Status(); return len(j) == 0 })
}
