package multicluster

import (
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// seedFile reads one of the seed's files, unchanged, from
// shared/scenarios/burst beside the repository (or beside the directory
// of worktrees holding it).
func seedFile(t *testing.T, name string) []byte {
	t.Helper()
	dir, _ := filepath.Abs(".")
	path := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "shared", "scenarios", "burst")); err == nil {
			path = filepath.Join(d, "shared", "scenarios", "burst", name)
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("scenario file missing (%v); the shared scenarios sit beside the repository", err)
	}
	return b
}

// runDeployment plays the Deployment controller, kubelet and EndpointSlice
// controller for one seed Deployment: one ready Pod from its template at
// ip, in the named Service's slice.
func runDeployment(t *testing.T, c *kube.Clients, file, service, ip string) {
	t.Helper()
	ctx := kubetest.Context(t)
	var d appsv1.Deployment
	if err := yaml.Unmarshal(seedFile(t, file), &d); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-1", Namespace: "default", Labels: d.Spec.Template.Labels},
		Spec: *d.Spec.Template.Spec.DeepCopy()}
	got, err := c.Kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := c.Kube.CoreV1().Pods("default").UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	port := d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
	pname, proto, ready := "http", corev1.ProtocolTCP, true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: service + "-x1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: "default"}}},
	}
	if _, err := c.Kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSeed004AcrossClusters runs seed 004 over two clusters on one
// network with the seed's YAML unchanged: the worker's primary copy in
// cluster1, its burst copy in cluster2, the Services in both, and
// worker-virtualservice.yaml (50/50) applied in cluster1. Real requests
// from frontend's sidecar in cluster1 split between the clusters;
// burst.yaml moves all of them to cluster2 and natural.yaml back.
func TestSeed004AcrossClusters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the workers run in network namespaces")
	}
	ctx := kubetest.Context(t)
	primaryIP, burstIP := "10.240.4.10", "10.241.4.10"
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startCluster(t, ctx, "cluster2", "network1")
	for _, c := range []*cluster{c1, c2} {
		kubectlApply(t, ctx, c.env.Clients, seedFile(t, "services.yaml"))
	}
	workerOn(t, "mcs-primary", primaryIP, "primary")
	workerOn(t, "mcs-burst", burstIP, "burst")
	runDeployment(t, c1.env.Clients, "worker-primary.yaml", "worker-service", primaryIP)
	runDeployment(t, c2.env.Clients, "worker-burst.yaml", "worker-service", burstIP)
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	kubectlApply(t, ctx, c1.env.Clients, seedFile(t, "worker-virtualservice.yaml"))
	outbound, _, prom := seedSidecar(t, c1.xds)

	const svc = "worker-service.default.svc.cluster.local"
	get := func() string {
		b, err := callHost(outbound, svc)
		if err != nil {
			return "error: " + err.Error()
		}
		return b
	}
	count := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			got[get()]++
		}
		return got
	}
	seen := map[string]bool{}
	waitFor(t, "both clusters' workers answering under the 50/50 rule", func() bool { seen[get()] = true; return seen["primary"] && seen["burst"] })
	const n = 400
	split := count(n)
	t.Logf("worker-virtualservice.yaml (50/50), %d requests: %v", n, split)
	// RANDOM over 400 requests: 200 ± 10 (one sigma); 140..260 is six.
	if split["primary"]+split["burst"] != n || split["primary"] < 140 || split["burst"] < 140 {
		t.Errorf("50/50 split: got %v over %d requests, want about half from each cluster and no errors", split, n)
	}

	kubectlApply(t, ctx, c1.env.Clients, seedFile(t, "burst.yaml"))
	run := 0
	waitFor(t, "burst.yaml moving traffic to cluster2", func() bool {
		if get() == "burst" {
			run++
		} else {
			run = 0
		}
		return run == 50
	})
	if got := count(200); got["burst"] != 200 {
		t.Errorf("after burst.yaml: got %v, want all 200 from burst (cluster2)", got)
	}
	kubectlApply(t, ctx, c1.env.Clients, seedFile(t, "natural.yaml"))
	run = 0
	waitFor(t, "natural.yaml moving traffic back to cluster1", func() bool {
		if get() == "primary" {
			run++
		} else {
			run = 0
		}
		return run == 50
	})
	if got := count(200); got["primary"] != 200 {
		t.Errorf("after natural.yaml: got %v, want all 200 from primary (cluster1)", got)
	}
	byCluster := scrape(t, prom)
	t.Logf("frontend sidecar istio_requests_total{reporter=source} by destination_cluster: %v", byCluster)
	if byCluster["cluster2"] < split["burst"]+200 || byCluster["cluster1"] < split["primary"]+200 {
		t.Errorf("metrics by destination_cluster: got %v, want at least cluster1 %d, cluster2 %d", byCluster, split["primary"]+200, split["burst"]+200)
	}
}
