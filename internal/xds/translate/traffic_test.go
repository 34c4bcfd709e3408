package translate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// TestTraffic runs requests through each scenario's generated config with
// the simulator: one table per scenario of /work/shared/scenarios.
func TestTraffic(t *testing.T) {
	const (
		billV1    = "outbound|9999|v1|bill-service.istio-demo.svc.cluster.local"
		billV2    = "outbound|9999|v2|bill-service.istio-demo.svc.cluster.local"
		bill      = "outbound|9999||bill-service.istio-demo.svc.cluster.local"
		flaskV2   = "outbound|80|v2|flaskapp.default.svc.cluster.local"
		flask     = "outbound|80||flaskapp.default.svc.cluster.local"
		canaryV1  = "outbound|80|v1|canary.default.svc.cluster.local"
		canaryV2  = "outbound|80|v2|canary.default.svc.cluster.local"
		simple    = "outbound|80||simple.simple.svc.cluster.local"
		nginx     = "outbound|80||nginx.simple.svc.cluster.local"
		worker1   = "outbound|80|primary|worker-service.default.svc.cluster.local"
		worker2   = "outbound|80|burst|worker-service.default.svc.cluster.local"
		frontend  = "outbound|80||frontend-service.default.svc.cluster.local"
		redis     = "outbound|6379||redis-cache-service.default.svc.cluster.local"
		sideNginx = "outbound|80||nginx.sidecar.svc.cluster.local"
	)
	type row struct {
		name string
		req  simRequest
		want string
	}
	tables := map[string][]row{
		"bill-service-nomesh": {
			{"short name", simRequest{host: "bill-service:9999", port: 9999},
				"listener 0.0.0.0_9999 -> route 9999/bill-service.istio-demo.svc.cluster.local:9999/default -> cluster " + bill + " retries=2"},
			{"unknown host passes through", simRequest{host: "example.com", port: 9999},
				"listener 0.0.0.0_9999 -> route 9999/allow_any/allow_any -> cluster PassthroughCluster retries=none"},
			{"other port passes through", simRequest{host: "example.com", port: 5432},
				"listener virtualOutbound -> tcp PassthroughCluster"},
		},
		"bill-service": {
			{"GET bill-service:9999/ splits 90/10", simRequest{host: "bill-service:9999", port: 9999},
				"listener 0.0.0.0_9999 -> route 9999/bill-service.istio-demo.svc.cluster.local:9999/bill-service-route -> clusters " + billV1 + ":90 " + billV2 + ":10 retries=2"},
			{"FQDN", simRequest{host: "bill-service.istio-demo.svc.cluster.local:9999", port: 9999},
				"listener 0.0.0.0_9999 -> route 9999/bill-service.istio-demo.svc.cluster.local:9999/bill-service-route -> clusters " + billV1 + ":90 " + billV2 + ":10 retries=2"},
			{"VIP", simRequest{host: "10.96.0.20:9999", port: 9999},
				"listener 0.0.0.0_9999 -> route 9999/bill-service.istio-demo.svc.cluster.local:9999/bill-service-route -> clusters " + billV1 + ":90 " + billV2 + ":10 retries=2"},
		},
		"bill-service-inbound": {
			{"inbound to the app", simRequest{dstIP: "10.0.1.1", host: "bill-service:9999", port: 80},
				"listener virtualInbound -> route inbound|80||/inbound|http|80/default -> cluster inbound|80|| retries=none"},
		},
		"flaskapp-nomesh": {
			{"alternates through the service cluster", simRequest{host: "flaskapp", port: 80, path: "/env/version"},
				"listener 0.0.0.0_80 -> route 80/flaskapp.default.svc.cluster.local:80/default -> cluster " + flask + " retries=2"},
		},
		"flaskapp": {
			{"only v2 answers", simRequest{host: "flaskapp", port: 80, path: "/env/version"},
				"listener 0.0.0.0_80 -> route 80/flaskapp.default.svc.cluster.local:80/ -> cluster " + flaskV2 + " retries=2"},
		},
		"canary": {
			{"user jesse reaches v2", simRequest{host: "canary", port: 80, headers: map[string]string{"user": "jesse"}},
				"listener 0.0.0.0_80 -> route 80/canary.default.svc.cluster.local:80/ -> cluster " + canaryV2 + " retries=2"},
			{"others reach v1", simRequest{host: "canary", port: 80, headers: map[string]string{"user": "bob"}},
				"listener 0.0.0.0_80 -> route 80/canary.default.svc.cluster.local:80/ -> cluster " + canaryV1 + " retries=2"},
			{"no header reaches v1", simRequest{host: "canary", port: 80},
				"listener 0.0.0.0_80 -> route 80/canary.default.svc.cluster.local:80/ -> cluster " + canaryV1 + " retries=2"},
		},
		"canary-fault": {
			{"jesse is delayed 5s", simRequest{host: "canary", port: 80, headers: map[string]string{"user": "jesse"}},
				"listener 0.0.0.0_80 -> route 80/canary.default.svc.cluster.local:80/ -> cluster " + canaryV2 + " retries=2 delay=5s@100%"},
			{"half the others abort 500", simRequest{host: "canary", port: 80},
				"listener 0.0.0.0_80 -> route 80/canary.default.svc.cluster.local:80/ -> cluster " + canaryV1 + " retries=2 abort=500@50%"},
		},
		"simple-gateway": {
			{"host simple.zhongmingmao.io reaches simple", simRequest{host: "simple.zhongmingmao.io", port: 80},
				"listener 0.0.0.0_80 -> route http.80/simple.zhongmingmao.io:80/ -> cluster " + simple + " retries=2"},
			{"other hosts get 404", simRequest{host: "other.example.com", port: 80},
				"listener 0.0.0.0_80 -> route http.80 -> no virtual host (404)"},
			{"no listener on 8080", simRequest{host: "simple.zhongmingmao.io", port: 8080}, "no listener"},
		},
		"simple-gateway-l7": {
			{"/simple/hello rewritten to /hello", simRequest{host: "simple.zhongmingmao.io", port: 80, path: "/simple/hello"},
				"listener 0.0.0.0_80 -> route http.80/simple.zhongmingmao.io:80/ -> cluster " + simple + " rewrite=/hello retries=2"},
			{"/nginx/x goes to nginx", simRequest{host: "simple.zhongmingmao.io", port: 80, path: "/nginx/index.html"},
				"listener 0.0.0.0_80 -> route http.80/simple.zhongmingmao.io:80/ -> cluster " + nginx + " rewrite=/ retries=2"},
			{"/other is not routed", simRequest{host: "simple.zhongmingmao.io", port: 80, path: "/other"},
				"listener 0.0.0.0_80 -> route http.80/simple.zhongmingmao.io:80 -> no route (404)"},
		},
		"https-gateway": {
			{"SNI httpsserver reaches httpserver", simRequest{host: "httpsserver.zhongmingmao.io", sni: "httpsserver.zhongmingmao.io", port: 443},
				"listener 0.0.0.0_443 -> route https.443.https-default.httpsserver.securesvc/httpsserver.zhongmingmao.io:443/ -> cluster outbound|80||httpserver.securesvc.svc.cluster.local retries=2"},
			{"unknown SNI has no chain", simRequest{host: "x.example.com", sni: "x.example.com", port: 443},
				"listener 0.0.0.0_443 -> no filter chain"},
		},
		"burst-gateway": {
			{"any host reaches the frontend", simRequest{host: "203.0.113.7", port: 80, path: "/"},
				"listener 0.0.0.0_80 -> route http.80/*:80/ -> cluster " + frontend + " retries=2"},
		},
		"burst-frontend": {
			{"worker split 50/50", simRequest{host: "worker-service", port: 80, method: "POST"},
				"listener 0.0.0.0_80 -> route 80/worker-service.default.svc.cluster.local:80/ -> clusters " + worker1 + ":50 " + worker2 + ":50 retries=2"},
			{"redis is plain TCP", simRequest{host: "redis-cache-service", port: 6379},
				"listener 10.96.0.62_6379 -> tcp " + redis},
		},
		"burst-shifted": {
			{"all worker traffic to burst", simRequest{host: "worker-service", port: 80, method: "POST"},
				"listener 0.0.0.0_80 -> route 80/worker-service.default.svc.cluster.local:80/ -> cluster " + worker2 + " retries=2"},
		},
		"burst-natural": {
			{"all worker traffic back to primary", simRequest{host: "worker-service", port: 80, method: "POST"},
				"listener 0.0.0.0_80 -> route 80/worker-service.default.svc.cluster.local:80/ -> cluster " + worker1 + " retries=2"},
		},
		"sidecar-basic": {
			{"toolbox to nginx", simRequest{host: "nginx", port: 80},
				"listener 0.0.0.0_80 -> route 80/nginx.sidecar.svc.cluster.local:80/default -> cluster " + sideNginx + " retries=2"},
			{"toolbox to the internet", simRequest{host: "example.com", port: 443},
				"listener virtualOutbound -> tcp PassthroughCluster"},
		},
		"sidecar-basic-nginx": {
			{"inbound port 80", simRequest{dstIP: "10.0.7.1", host: "nginx", port: 80},
				"listener virtualInbound -> route inbound|80||/inbound|http|80/default -> cluster inbound|80|| retries=none"},
			{"inbound other port passes through", simRequest{dstIP: "10.0.7.1", host: "nginx", port: 9090},
				"listener virtualInbound -> tcp InboundPassthroughCluster"},
		},
	}
	for name, rows := range tables {
		t.Run(name, func(t *testing.T) {
			in := loadCase(t, filepath.Join("testdata", name))
			out := Translate(in)
			for _, r := range rows {
				if r.req.dstIP != "" && in.Proxy.Type == SidecarProxy && r.req.dstIP == in.Proxy.IPs[0] {
					// Inbound: the capture listener is virtualInbound.
					got := simulateInbound(t, in, out, r.req)
					if got != r.want {
						t.Errorf("%s:\n got %s\nwant %s", r.name, got, r.want)
					}
					continue
				}
				if got := simulate(t, in, out, r.req); got != r.want {
					t.Errorf("%s:\n got %s\nwant %s", r.name, got, r.want)
				}
			}
		})
	}
}

// simulateInbound runs a request that arrived at the proxy's own IP through
// virtualInbound.
func simulateInbound(t *testing.T, in Input, out *Output, req simRequest) string {
	t.Helper()
	var l *listenerv3.Listener
	for _, cand := range out.Listeners {
		if cand.GetName() == VirtualInboundListener {
			l = cand
		}
	}
	if l == nil {
		return "no listener"
	}
	router := *in.Proxy
	router.Type = RouterProxy
	in.Proxy = &router
	// The inbound listener is matched by its chains' destination_port, not
	// its own port; pretend it listens on the request port.
	fc := pickChain(l, req)
	if fc == nil {
		return "listener virtualInbound -> no filter chain"
	}
	tmp := &Output{Routes: out.Routes, Listeners: []*listenerv3.Listener{{Name: l.GetName(), Address: socketAddress("0.0.0.0", req.port), FilterChains: []*listenerv3.FilterChain{fc}}}}
	return simulate(t, in, tmp, req)
}

// TestScenarioCopies guards the self-contained testdata: every Istio
// resource file of /work/shared/scenarios must appear verbatim in some
// testdata/*/input.yaml (the Kubernetes workload files are expressed as
// ServiceEntry/WorkloadEntry instead). Skipped when the scenarios are not
// on this machine.
func TestScenarioCopies(t *testing.T) {
	root := "/work/shared/scenarios"
	files, _ := filepath.Glob(filepath.Join(root, "*", "*.yaml"))
	if len(files) == 0 {
		t.Skip("no scenarios at " + root)
	}
	inputs, _ := filepath.Glob("testdata/*/input.yaml")
	var all []string
	for _, f := range inputs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(b))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "networking.istio.io") {
			continue // Kubernetes objects only
		}
		found := false
		for _, in := range all {
			if strings.Contains(in, strings.TrimSpace(string(b))) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s is not copied verbatim into any testdata/*/input.yaml", f)
		}
	}
}
