package translate

import (
	"path/filepath"
	"testing"
)

// TestTrafficIstioStyle runs the Istio-style cases through the simulator.
func TestTrafficIstioStyle(t *testing.T) {
	const (
		rv1     = "outbound|9080|v1|reviews.default.svc.cluster.local"
		rv2     = "outbound|9080|v2|reviews.default.svc.cluster.local"
		rv3     = "outbound|9080|v3|reviews.default.svc.cluster.local"
		reviews = "outbound|9080||reviews.default.svc.cluster.local"
		ratings = "outbound|9080||ratings.default.svc.cluster.local"
		rvHost  = "reviews.default.svc.cluster.local:9080"
	)
	type row struct {
		name string
		req  simRequest
		want string
	}
	tables := map[string][]row{
		"retries-timeouts": {
			{"attempts 0 turns retries off", simRequest{host: "reviews:9080", port: 9080, path: "/fragile/x"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/no-retries -> cluster " + rv1 + " retries=none"},
			{"timeout and retries", simRequest{host: "reviews:9080", port: 9080, path: "/"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/patient -> cluster " + rv2 + " timeout=3s retries=3"},
		},
		"mirror": {
			{"mirrors 25.5% to v2", simRequest{host: "reviews:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/ -> cluster " + rv1 + " retries=2 mirror=" + rv2 + "@25.5%"},
		},
		"cors": {
			{"cors policy on the route", simRequest{host: "ratings:9080", port: 9080, method: "OPTIONS"},
				"listener 0.0.0.0_9080 -> route 9080/ratings.default.svc.cluster.local:9080/ -> cluster " + ratings + " retries=2 cors"},
		},
		"redirect-direct-response": {
			{"redirect", simRequest{host: "reviews:9080", port: 9080, path: "/old"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/moved -> redirect FOUND scheme=https host=reviews.example.com port=8443 path=/new"},
			{"exact path only", simRequest{host: "reviews:9080", port: 9080, path: "/old/more"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/ -> cluster " + reviews + " retries=2"},
			{"direct response with body", simRequest{host: "reviews:9080", port: 9080, path: "/healthz"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/health -> direct 200 \"ok\""},
			{"direct response", simRequest{host: "reviews:9080", port: 9080, path: "/v0/list"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/gone -> direct 410"},
		},
		"header-ops": {
			{"set, add, remove and authority", simRequest{host: "reviews:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/ -> clusters " + rv1 + ":80 " + rv2 + ":20 host=reviews.internal retries=2 headers=+x-added=1,+x-mesh=trellis,-x-internal"},
		},
		"match-conditions": {
			{"sourceLabels match this proxy", simRequest{host: "reviews:9080", port: 9080, path: "/from-pp/1"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/from-productpage -> cluster " + rv3 + " retries=2"},
			{"regex path and method", simRequest{host: "reviews:9080", port: 9080, path: "/api/v2/reviews"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/api.regex -> cluster " + rv2 + " retries=2"},
			{"regex must match the whole path", simRequest{host: "reviews.default.svc.cluster.local:9080", port: 9080, path: "/api/v2/reviews/1"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/authority -> cluster " + rv1 + " retries=2"},
			{"regex path, wrong method", simRequest{host: "reviews.default.svc.cluster.local:9080", port: 9080, path: "/api/v2/reviews", method: "POST"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/authority -> cluster " + rv1 + " retries=2"},
			{"query params", simRequest{host: "reviews:9080", port: 9080, path: "/search?q=trellis&debug=1"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/api.query -> cluster " + rv2 + " retries=2"},
			{"query param missing", simRequest{host: "reviews.default.svc.cluster.local:9080", port: 9080, path: "/search?q=trellis"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/authority -> cluster " + rv1 + " retries=2"},
			{"ignoreUriCase", simRequest{host: "reviews:9080", port: 9080, path: "/case/x"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/api.nocase -> cluster " + rv2 + " retries=2"},
			{"withoutHeaders", simRequest{host: "reviews.default.svc.cluster.local:9080", port: 9080, path: "/case/x", headers: map[string]string{"x-skip": "1"}},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/authority -> cluster " + rv1 + " retries=2"},
			{"authority by FQDN does not match prefix", simRequest{host: "10.96.1.10:9080", port: 9080, path: "/z"},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + " -> no route (404)"},
		},
		"sidecar-egress": {
			{"allowed same-namespace host", simRequest{host: "reviews:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/default -> cluster " + reviews + " retries=2"},
			{"allowed other namespace", simRequest{host: "details.prod:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/details.prod.svc.cluster.local:9080/default -> cluster outbound|9080||details.prod.svc.cluster.local retries=2"},
			{"egress listener with a port: only that port", simRequest{host: "ratings:9090", port: 9090},
				"listener 0.0.0.0_9090 -> route 9090/ratings.default.svc.cluster.local:9090/default -> cluster outbound|9090||ratings.default.svc.cluster.local retries=2"},
			{"egress listener with a port: other ports blocked", simRequest{host: "ratings:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/block_all/block_all -> direct 502"},
			{"not in egress: blocked (REGISTRY_ONLY from the Sidecar)", simRequest{host: "secret.prod:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/block_all/block_all -> direct 502"},
			{"unknown TCP blocked", simRequest{host: "example.com", port: 5432},
				"listener virtualOutbound -> tcp BlackHoleCluster"},
			{"ingress listener from the Sidecar", simRequest{dstIP: "10.0.10.9", host: "productpage:9080", port: 9080},
				"listener virtualInbound -> route inbound|9080||/inbound|http|9080/default -> cluster inbound|9080|| retries=none"},
			{"ingress TCP listener", simRequest{dstIP: "10.0.10.9", port: 9443},
				"listener virtualInbound -> tcp inbound|9443||"},
		},
		"registry-only": {
			{"known host", simRequest{host: "ratings:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/ratings.default.svc.cluster.local:9080/default -> cluster " + ratings + " retries=2"},
			{"unknown host on a mesh port", simRequest{host: "example.com", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/block_all/block_all -> direct 502"},
			{"unknown port", simRequest{host: "example.com", port: 443},
				"listener virtualOutbound -> tcp BlackHoleCluster"},
		},
		"external-services": {
			{"DNS service over HTTP", simRequest{host: "httpbin.org", port: 80},
				"listener 0.0.0.0_80 -> route 80/httpbin.org:80/default -> cluster outbound|80||httpbin.org retries=2"},
			{"TLS by SNI", simRequest{host: "httpbin.org", sni: "httpbin.org", port: 443},
				"listener 0.0.0.0_443 -> tcp outbound|443||httpbin.org"},
			{"wildcard TLS by SNI", simRequest{host: "en.wikipedia.org", sni: "en.wikipedia.org", port: 443},
				"listener 0.0.0.0_443 -> tcp outbound|443||*.wikipedia.org"},
			{"other TLS passes through", simRequest{host: "example.com", sni: "example.com", port: 443},
				"listener 0.0.0.0_443 -> tcp PassthroughCluster"},
			{"address in a ServiceEntry CIDR", simRequest{dstIP: "10.20.5.5", port: 3306, raw: true},
				"listener 0.0.0.0_3306 -> tcp outbound|3306||corp-db.internal"},
			{"address outside the CIDR passes through", simRequest{dstIP: "10.21.0.1", port: 3306, raw: true},
				"listener 0.0.0.0_3306 -> tcp PassthroughCluster"},
			{"static external TCP with VIP", simRequest{host: "db.internal", port: 5432},
				"listener 192.168.50.5_5432 -> tcp outbound|5432||db.internal"},
		},
		"protocol-sniffing": {
			{"HTTP on an unknown-protocol port uses the routes", simRequest{host: "web:8000", port: 8000, path: "/beta/x"},
				"listener 10.96.1.40_8000 -> route 8000/web.default.svc.cluster.local:8000/ -> cluster outbound|8000|v2|web.default.svc.cluster.local retries=2"},
			{"other bytes go through tcp_proxy", simRequest{host: "web", port: 8000, raw: true},
				"listener 10.96.1.40_8000 -> tcp outbound|8000||web.default.svc.cluster.local"},
			{"no 0.0.0.0 listener captures the port for other IPs", simRequest{dstIP: "192.0.2.9", port: 8000, raw: true},
				"listener virtualOutbound -> tcp PassthroughCluster"},
		},
		"tcp-split": {
			{"weighted tcp route", simRequest{host: "mongo", port: 27017},
				"listener 10.96.1.30_27017 -> tcp outbound|27017|v1|mongo.default.svc.cluster.local:70 outbound|27017|v2|mongo.default.svc.cluster.local:30"},
		},
		"vs-precedence": {
			{"first exact VirtualService wins", simRequest{host: "reviews:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/" + rvHost + "/ -> cluster " + rv1 + " retries=2"},
			{"service exported elsewhere is unknown here", simRequest{host: "hidden.prod:9080", dstIP: "10.96.3.1", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/allow_any/allow_any -> cluster PassthroughCluster retries=none"},
			{"wildcard VirtualService for other hosts", simRequest{host: "ratings:9080", port: 9080},
				"listener 0.0.0.0_9080 -> route 9080/ratings.default.svc.cluster.local:9080/ -> cluster " + rv3 + " timeout=7s retries=2"},
		},
		"gateway-servers": {
			{"http redirects to https (require_tls)", simRequest{host: "reviews.bookinfo.com", port: 80, path: "/reviews/1"},
				"listener 0.0.0.0_80 -> route http.80/reviews.bookinfo.com:80/ -> cluster " + reviews + " retries=2"},
			{"https merges two VirtualServices in order", simRequest{host: "reviews.bookinfo.com", sni: "reviews.bookinfo.com", port: 443, path: "/other"},
				"listener 0.0.0.0_443 -> route https.443.https-mtls.bookinfo.default/reviews.bookinfo.com:443/ -> direct 418"},
			{"tls passthrough by SNI", simRequest{sni: "ratings.bookinfo.com", port: 8443},
				"listener 0.0.0.0_8443 -> tcp " + ratings},
			{"server bound to one address", simRequest{host: "internal.bookinfo.com:8080", port: 8080},
				"listener 10.0.0.100_8080 -> route http.8080.10.0.0.100/internal.bookinfo.com:8080/ -> cluster " + reviews + " retries=2"},
			{"tcp server", simRequest{port: 31400},
				"listener 0.0.0.0_31400 -> tcp outbound|9090||ratings.default.svc.cluster.local"},
			{"delegate route inside the root prefix", simRequest{host: "api.bookinfo.com", port: 80, path: "/ratings/v2/x", headers: map[string]string{"x-beta": "1"}},
				"listener 0.0.0.0_80 -> route http.80/api.bookinfo.com:80/ -> cluster outbound|9090||ratings.default.svc.cluster.local retries=2"},
			{"delegate default keeps the root prefix", simRequest{host: "api.bookinfo.com", port: 80, path: "/ratings/1"},
				"listener 0.0.0.0_80 -> route http.80/api.bookinfo.com:80/ -> cluster " + ratings + " retries=2"},
			{"delegate match outside the root prefix is dropped", simRequest{host: "api.bookinfo.com", port: 80, path: "/other"},
				"listener 0.0.0.0_80 -> route http.80/api.bookinfo.com:80 -> no route (404)"},
			{"gateway of another selector is not served", simRequest{host: "x", port: 9000}, "no listener"},
		},
	}
	for name, rows := range tables {
		t.Run(name, func(t *testing.T) {
			in := loadCase(t, filepath.Join("testdata", name))
			out := Translate(in)
			for _, r := range rows {
				sim := simulate
				if in.Proxy.Type == SidecarProxy && r.req.dstIP != "" && r.req.dstIP == in.Proxy.IPs[0] {
					sim = simulateInbound
				}
				if got := sim(t, in, out, r.req); got != r.want {
					t.Errorf("%s:\n got %s\nwant %s", r.name, got, r.want)
				}
			}
		})
	}
}
