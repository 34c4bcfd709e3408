package multicluster

import (
	"os"
	"testing"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

// failoverRule is what a user applies in cluster1 for locality failover:
// outlier detection (which turns locality-aware load balancing on) and
// the locality setting.
const failoverRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: worker, namespace: seed}
spec:
  host: worker.seed.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
`

// TestCrossClusterFailover: frontend's sidecar in cluster1, locality
// region1/zone1, sends everything to the primary worker in its own
// locality (cluster1) while it is up; when every primary endpoint stops,
// outlier detection ejects it and the traffic fails over to the burst
// worker in cluster2 (region2). The test counts the requests that failed
// and requires that none fail after the ejection.
func TestCrossClusterFailover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the workers run in network namespaces")
	}
	ctx := kubetest.Context(t)
	primary, burst := "10.240.2.10", "10.241.2.10"
	stopPrimary := worker(t, ctx, "mcf-primary", primary, "primary")
	worker(t, ctx, "mcf-burst", burst, "burst")
	c1 := startCluster(t, ctx, "cluster1", "network1")
	c2 := startCluster(t, ctx, "cluster2", "network1")
	runWorker(t, ctx, c1.env.Clients, "region1.zone1", map[string]string{"primary": primary})
	runWorker(t, ctx, c2.env.Clients, "region2.zone1", map[string]string{"burst": burst})
	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	kubectlApply(t, ctx, c1.env.Clients, []byte(failoverRule))
	outbound, _, _ := sidecar(t, c1.xds, "cluster1", "network1", "app=frontend,istio-locality=region1.zone1")

	// Both endpoints served, cluster2's at a lower priority.
	waitFor(t, "cluster2's endpoint in cluster1's EDS", func() bool { return len(eds(t, ctx, c1.xds, node("cluster1", "network1"))) == 2 })
	run := 0
	waitFor(t, "100 answers in a row from the local primary", func() bool {
		b, err := call(outbound)
		if err == nil && b == "primary" {
			run++
		} else {
			run = 0
		}
		return run == 100
	})

	stopPrimary()
	const n = 300
	failed, firstBurst, lastFailed := 0, -1, -1
	got := map[string]int{}
	for i := 0; i < n; i++ {
		b, err := call(outbound)
		if err != nil {
			failed++
			lastFailed = i
			t.Logf("request %d after stopping primary: %v", i, err)
			continue
		}
		got[b]++
		if b == "burst" && firstBurst < 0 {
			firstBurst = i
		}
	}
	t.Logf("after every primary endpoint stopped: %d requests, %d failed (last failed #%d), first answer from cluster2 at #%d, answers %v",
		n, failed, lastFailed, firstBurst, got)
	if got["burst"] == 0 || got["primary"] != 0 {
		t.Fatalf("after the primary stopped: got %v, want every answer from burst (cluster2)", got)
	}
	if lastFailed >= firstBurst && failed > 0 {
		t.Errorf("a request failed (#%d) after traffic had failed over (#%d): want failures only before the ejection", lastFailed, firstBurst)
	}
	if failed > 1 {
		t.Errorf("%d requests failed; with consecutive5xxErrors 3 and 2 retries on connect-failure at most the first may", failed)
	}
}
