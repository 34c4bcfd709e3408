package chaos

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dr is the bill service's DestinationRule with subsets name -> version.
func dr(subsets ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: bill-service, namespace: %s}\nspec:\n  host: %s\n  subsets:\n", namespace, host)
	for i := 0; i+1 < len(subsets); i += 2 {
		fmt.Fprintf(&b, "  - name: %s\n    labels: {version: %s}\n", subsets[i], subsets[i+1])
	}
	return b.String()
}

// vs is the bill service's VirtualService with these http routes (YAML
// list items indented by two spaces).
func vs(routes string) string {
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bill-service, namespace: %s}\nspec:\n  hosts: [bill-service]\n  http:\n%s", namespace, routes)
}

// split routes to two subsets (of host) by weight.
func split(h, a string, wa int, b string) string {
	return fmt.Sprintf("  - route:\n    - destination: {host: %s, subset: %s}\n      weight: %d\n    - destination: {host: %s, subset: %s}\n      weight: %d\n", h, a, wa, h, b, 100-wa)
}

// baseConfig: subsets v1 and v2, traffic split evenly.
func baseConfig() string {
	return dr("v1", "v1", "v2", "v2") + "---\n" + vs(split(host, "v1", 50, "v2"))
}

// edit is the i-th VirtualService edit of the churn case: weights, then a
// header match in front of the split, then timeouts and retries.
func edit(i int) string {
	w := (i * 37) % 101
	switch i % 3 {
	case 0:
		return vs(split(host, "v1", w, "v2"))
	case 1:
		return vs(fmt.Sprintf("  - match:\n    - headers:\n        x-chaos: {exact: c%d}\n    route:\n    - destination: {host: %s, subset: v2}\n", i, host) + split(host, "v1", w, "v2"))
	default:
		return vs(fmt.Sprintf("  - timeout: %ds\n    retries: {attempts: %d, perTryTimeout: 2s}\n    route:\n    - destination: {host: %s, subset: v1}\n      weight: %d\n    - destination: {host: %s, subset: v2}\n      weight: %d\n",
			3+i%5, 1+i%3, host, w, host, 100-w))
	}
}

// TestChaos runs the cases in order on one mesh, each with its own load
// window. Cases whose disruption the mesh promises to hide must lose no
// request.
func TestChaos(t *testing.T) {
	requireMesh(t)
	d := caseDurations()
	ms := startMesh(t)
	ms.apply("bill", baseConfig())
	front, _ := ms.m.Workload("front")
	url := "http://" + ms.m.Plan.Services[0].VIP.String() + ":9999/"
	grpcAddr := fmt.Sprintf("%s:%d", ms.m.Plan.Services[0].VIP, grpcPort)
	apps := ms.grpcApps
	ms.waitAnswers(front.Netns, url, "this is bill-service-v1", "this is bill-service-v2")
	ms.waitGRPCAnswers(front.Netns, grpcAddr, "this is bill-service-v1", "this is bill-service-v2")
	t.Logf("load: %d rps of HTTP/1.1 GET %s and %d rps of gRPC unary calls to %s (%d HTTP/2 connections) from %s through both sidecars; windows %s/%s/%s",
		*rps, url, *rps, grpcAddr, grpcConns, front.Netns, d.before, d.during, d.after)

	// grpcOpen are the zero-loss cases whose gRPC loss is an open defect,
	// reported and not yet asserted (RELIABILITY.md, "gRPC"): renaming
	// subsets under gRPC load fails some calls 503 UC (upstream
	// connection termination) at the client sidecar, HTTP/1.1 none.
	grpcOpen := map[string]bool{"subsets-and-new-service": true}
	run := func(name string, zeroLoss bool, disrupt func(t *testing.T, l *load)) summary {
		return ms.runCase(t, name, front.Netns, url, grpcAddr, d, zeroLoss, zeroLoss && !grpcOpen[name], ms.clientCounts(), disrupt)
	}

	run("virtualservice-edits", true, func(t *testing.T, l *load) {
		every := d.during / time.Duration(d.edits)
		for i := range d.edits {
			ms.apply("bill", dr("v1", "v1", "v2", "v2")+"---\n"+edit(i))
			time.Sleep(every)
		}
	})

	run("trellisd-killed", true, func(t *testing.T, l *load) {
		ms.signal(ms.trellisd, syscall.SIGKILL)
		time.Sleep(d.down)
		ms.restartTrellisd()
		// Resync: a change made after the restart reaches the proxies.
		t0 := time.Now()
		ms.apply("bill", dr("v1", "v1", "v2", "v2")+"---\n"+vs(split(host, "v2", 100, "v1")))
		ms.waitOnly(l.client, url, "this is bill-service-v2")
		t.Logf("trellisd down %s; after its restart a route change took effect in %s", d.down, time.Since(t0).Round(time.Millisecond))
		ms.apply("bill", baseConfig())
	})

	run("subsets-and-new-service", true, func(t *testing.T, l *load) {
		n := d.edits / 2
		every := d.during / time.Duration(2*n+1)
		for i := range n {
			// The route and the subsets it names change in one write: the
			// proxy must get the new clusters before the route that uses them
			// and drop the old ones only after.
			a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
			ms.apply("bill", dr(a, "v1", b, "v2")+"---\n"+vs(split(host, a, (i*29)%101, b)))
			time.Sleep(every)
		}
		// A new service, and the route moved onto it in the same write.
		newHost := "bill-new." + namespace + ".svc.cluster.local"
		ms.apply("bill", fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-new, namespace: %s}
spec:
  hosts: [%s]
  addresses: [10.%d.1.200]
  ports: [{number: 9999, name: http, protocol: HTTP, targetPort: 80}, {number: %d, name: grpc, protocol: GRPC, targetPort: %d}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {service: bill-service, version: v2}}
---
`, namespace, newHost, subnetX, grpcPort, grpcTarget)+vs(fmt.Sprintf("  - route:\n    - destination: {host: %s}\n", newHost)))
		ms.waitOnly(l.client, url, "this is bill-service-v2")
		time.Sleep(d.during / time.Duration(2*n+1) * time.Duration(n))
		ms.apply("bill", baseConfig())
	})

	var servers, serverNetns []string
	for _, w := range ms.m.Plan.Workloads {
		if w.Name != "front" {
			servers, serverNetns = append(servers, w.Name), append(serverNetns, w.Netns)
		}
	}
	run("packet-loss-1pct", true, func(t *testing.T, l *load) {
		r0, err := tcpRetransmits(front.Netns)
		if err != nil {
			t.Fatal(err)
		}
		ms.packetLoss(append([]string{front.Netns}, serverNetns...), d.during)
		r1, err := tcpRetransmits(front.Netns)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("packet-loss-1pct: the client namespace retransmitted %d TCP segments", r1-r0)
		if r1 == r0 {
			t.Errorf("no TCP retransmission in %s while 1%% of its packets were dropped: the loss was not in effect", front.Netns)
		}
	})

	const delay = 50 * time.Millisecond
	s := run("delay-50ms", true, func(t *testing.T, l *load) { ms.delay(front.Netns, delay, d.during) })
	// Every request crossed the delayed interface at least once: if the
	// median did not slow down by the delay, the fault was not applied.
	if s.sent > 0 && s.p50[during] < delay { // (not when -run skipped the case)
		t.Errorf("delay-50ms: p50 during the delay %s < %s: the delay was not in effect", s.p50[during], delay)
	}

	run("upstream-resets-2pct", true, func(t *testing.T, l *load) {
		s0 := ms.serverRequests(servers)
		ms.resets(serverNetns, d.during)
		reset, bad := flagDelta(s0, ms.serverRequests(servers))
		// What the servers' sidecars answered: the resets they saw, which the
		// client sidecar's retries (503 is in Istio's default retry_on) hide.
		t.Logf("upstream-resets-2pct: the servers' sidecars answered %s", reset)
		if bad == 0 {
			t.Errorf("the servers' sidecars saw no reset: the fault was not in effect")
		}
	})

	run("endpoint-drained", true, func(t *testing.T, l *load) {
		// As a scale-down does: the endpoint leaves the registry, then the
		// sidecar is told to stop (it drains), then the app.
		ms.deregister("bill-v1b")
		time.Sleep(d.during / 4)
		ms.signal(ms.process("proxy", "bill-v1b").PID, syscall.SIGTERM)
		ms.signal(ms.process("app", "bill-v1b").PID, syscall.SIGTERM)
		apps["bill-v1b"].drain()
		time.Sleep(d.during / 2)
	})

	run("endpoint-killed", false, func(t *testing.T, l *load) {
		// No warning: the sidecar and the app die, the endpoint stays
		// registered; what fails is what retries and outlier detection do
		// not hide.
		ms.signal(ms.process("proxy", "bill-v1c").PID, syscall.SIGKILL)
		ms.signal(ms.process("app", "bill-v1c").PID, syscall.SIGKILL)
		apps["bill-v1c"].kill()
		time.Sleep(d.during)
	})
}

// grpcAllowance is, per case, the share of gRPC calls allowed to fail
// where the goal is "no more failures than the retry policy allows". An
// app resetting its HTTP/2 connection fails every stream on it at once,
// so the failures of one call's attempts are not independent: at 1,000
// rps about 9 % of the servers' sidecars' gRPC answers were 503 UC and
// 4 of 14,229 calls had all three attempts reset.
var grpcAllowance = map[string]float64{"upstream-resets-2pct": 0.001}

// flagged counts the entries of the delta from a to b whose response
// flags include one of flags.
func flagged(a, b map[string]float64, flags ...string) int {
	n := 0
	for k, v := range b {
		f := strings.Fields(k)
		if d := v - a[k]; d > 0 && len(f) > 1 {
			for _, fl := range strings.Split(f[1], ",") {
				if slices.Contains(flags, fl) {
					n += int(d)
					break
				}
			}
		}
	}
	return n
}

// counts is a proxy-side count of the load's requests by "code flags".
type counts struct {
	who  string
	read func() map[string]float64
}

// clientCounts are the client sidecar's (reporter=source).
func (ms *mesh) clientCounts() counts {
	return counts{"client sidecar", func() map[string]float64 { return ms.flags("http") }}
}

// runCase runs one case as a subtest: HTTP/1.1 load to url and gRPC load
// to grpcAddr from ns for d.before, the disruption, load for d.after; it
// prints both summaries, the proxy-side counts c, the client sidecar's
// gRPC counts and the RSS. With zeroLoss it fails on any failed HTTP/1.1
// request or any non-200 in c; with grpcZeroLoss on any failed gRPC call
// or any gRPC call the client sidecar did not answer 200 / grpc-status 0.
func (ms *mesh) runCase(t *testing.T, name, ns, url, grpcAddr string, d durations, zeroLoss, grpcZeroLoss bool, c counts, disrupt func(t *testing.T, l *load)) (s summary) {
	t.Run(name, func(t *testing.T) {
		rss0, flags0, gflags0 := ms.rssReport(), c.read(), ms.flags("grpc")
		l := startLoad(ns, url, *rps)
		g, err := startGRPCLoad(ns, grpcAddr, *rps)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(d.before)
		l.setPhase(during)
		g.setPhase(during)
		disrupt(t, l)
		l.setPhase(after)
		g.setPhase(after)
		time.Sleep(d.after)
		s = summarize(l.finish())
		gs := summarize(g.finish())
		flags, proxyBad := flagDelta(flags0, c.read())
		gflags, gproxyBad := flagDelta(gflags0, ms.flags("grpc"))
		t.Logf("%s: HTTP/1.1 %s\n  %s (code flags): %s\n%s: gRPC %s\n  client sidecar (code flags grpc-status): %s\n  RSS before: %s\n  RSS after:  %s",
			name, s, c.who, flags, name, gs, gflags, rss0, ms.rssReport())
		if zeroLoss && (s.failed > 0 || proxyBad > 0) {
			t.Errorf("%s lost HTTP/1.1 requests: %d failed at the client, %d non-200 at the %s; want 0", name, s.failed, proxyBad, c.who)
		}
		if allow, ok := grpcAllowance[name]; ok && grpcZeroLoss {
			// What the retry policy cannot hide: calls whose every attempt
			// was reset (URX: retries used up) and resets after the
			// response had started (UR, never retried, as in Envoy).
			beyond := gproxyBad - flagged(gflags0, ms.flags("grpc"), "URX", "UR")
			if beyond > 0 || float64(gs.failed) > allow*float64(gs.sent) {
				t.Errorf("%s lost gRPC calls beyond the retry policy: %d failed at the client (allowed %.2f%% of %d), %d not 200/grpc-status 0 at the client sidecar without URX/UR", name, gs.failed, 100*allow, gs.sent, beyond)
			}
		} else if grpcZeroLoss && (gs.failed > 0 || gproxyBad > 0) {
			t.Errorf("%s lost gRPC calls: %d failed at the client, %d not 200/grpc-status 0 at the client sidecar; want 0", name, gs.failed, gproxyBad)
		}
	})
	return s
}

// waitAnswers waits until the service has answered with each of want.
func (ms *mesh) waitAnswers(ns, url string, want ...string) {
	ms.t.Helper()
	l := startLoad(ns, url, 50)
	defer l.finish()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		l.mu.Lock()
		seen := map[string]bool{}
		for _, r := range l.results {
			if r.code == http.StatusOK {
				seen[r.answer] = true
			}
		}
		l.mu.Unlock()
		ok := true
		for _, w := range want {
			ok = ok && seen[w]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ms.t.Fatalf("%s: after 60s the answers seen are %v; want %q", url, seen, want)
		}
	}
}

// startGRPCApps starts the gRPC echo server in every server workload's
// namespace, stopped at the end of the test.
func (ms *mesh) startGRPCApps() map[string]*grpcApp {
	ms.t.Helper()
	apps := map[string]*grpcApp{}
	for _, w := range ms.m.Plan.Workloads {
		if w.Name == "front" {
			continue
		}
		a, err := startGRPCApp(w.Netns, "bill-service-"+w.Labels["version"])
		if err != nil {
			ms.t.Fatalf("gRPC app in %s: %v", w.Netns, err)
		}
		apps[w.Name] = a
		ms.t.Cleanup(a.kill)
	}
	return apps
}

// waitGRPCAnswers waits until the gRPC port has answered with each of want.
func (ms *mesh) waitGRPCAnswers(ns, target string, want ...string) {
	ms.t.Helper()
	l, err := startGRPCLoad(ns, target, 50)
	if err != nil {
		ms.t.Fatal(err)
	}
	defer l.finish()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		l.mu.Lock()
		seen := map[string]bool{}
		for _, r := range l.results {
			if r.ok() {
				seen[r.answer] = true
			} else {
				seen[r.key()] = true
			}
		}
		l.mu.Unlock()
		ok := true
		for _, w := range want {
			ok = ok && seen[w]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ms.t.Fatalf("%s: after 60s the gRPC answers seen are %v; want %q", target, seen, want)
		}
	}
}

// waitOnly waits until 20 calls in a row answer want.
func (ms *mesh) waitOnly(c *http.Client, url, want string) {
	ms.t.Helper()
	var last string
	for deadline, streak := time.Now().Add(60*time.Second), 0; streak < 20; {
		if time.Now().After(deadline) {
			ms.t.Fatalf("%s: no 20 answers in a row %q within 60s; last %q", url, want, last)
		}
		resp, err := c.Get(url)
		if err != nil {
			last, streak = err.Error(), 0
			continue
		}
		var b [64]byte
		n, _ := resp.Body.Read(b[:])
		resp.Body.Close()
		last = strings.TrimSpace(string(b[:n]))
		if resp.StatusCode == http.StatusOK && last == want {
			streak++
		} else {
			streak = 0
			time.Sleep(20 * time.Millisecond)
		}
	}
}
