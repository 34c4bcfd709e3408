package route

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

func compileYAML(t testing.TB, y string) (*Config, error) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var rc routev3.RouteConfiguration
	if err := protojson.Unmarshal(js, &rc); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return Compile(&rc)
}

const table = `
name: "80"
virtual_hosts:
- name: reviews
  domains: [reviews, "reviews:80", reviews.default.svc.cluster.local, "10.0.0.1"]
  routes:
  - name: jesse
    match:
      prefix: /
      headers:
      - name: end-user
        string_match: {exact: jesse}
    route: {cluster: v2}
  - name: regex-header
    match:
      prefix: /
      headers:
      - name: x-id
        string_match: {safe_regex: {regex: "[0-9]+"}}
    route: {cluster: digits}
  - name: not-mobile
    match:
      prefix: /ua
      headers:
      - name: user-agent
        string_match: {contains: Mobile}
        invert_match: true
    route: {cluster: desktop}
  - name: exact
    match: {path: /exact}
    route: {cluster: exact}
  - name: ci
    match: {prefix: /CaseLess, case_sensitive: false}
    route: {cluster: ci}
  - name: sep
    match: {path_separated_prefix: /api}
    route: {cluster: api}
  - name: regex
    match: {safe_regex: {regex: "/items/[0-9]+"}}
    route: {cluster: items}
  - name: method
    match:
      prefix: /m
      headers: [{name: ":method", string_match: {exact: POST}}]
    route: {cluster: post}
  - name: query
    match:
      prefix: /q
      query_parameters: [{name: debug, present_match: true}]
    route: {cluster: debug}
  - name: default
    match: {prefix: /}
    route: {cluster: v1}
- name: wild-suffix
  domains: ["*.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: suffix}}]
- name: wild-longer-suffix
  domains: ["*.api.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: longer-suffix}}]
- name: wild-prefix
  domains: ["internal.*"]
  routes: [{match: {prefix: /}, route: {cluster: prefix}}]
- name: catch-all
  domains: ["*"]
  routes: [{match: {prefix: /}, route: {cluster: any}}]
`

func TestSelect(t *testing.T) {
	c, err := compileYAML(t, table)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, authority, method, path string
		headers                       map[string]string
		want                          string
	}{
		{name: "header exact", authority: "reviews", path: "/", headers: map[string]string{"end-user": "jesse"}, want: "v2"},
		{name: "header exact other value", authority: "reviews", path: "/", headers: map[string]string{"end-user": "jason"}, want: "v1"},
		{name: "regex header must match whole value", authority: "reviews", path: "/", headers: map[string]string{"x-id": "12a"}, want: "v1"},
		{name: "regex header", authority: "reviews", path: "/", headers: map[string]string{"x-id": "123"}, want: "digits"},
		{name: "inverted contains", authority: "reviews", path: "/ua", headers: map[string]string{"user-agent": "Firefox"}, want: "desktop"},
		{name: "inverted contains matching", authority: "reviews", path: "/ua", headers: map[string]string{"user-agent": "Mobile Safari"}, want: "v1"},
		{name: "exact path", authority: "reviews", path: "/exact?x=1", want: "exact"},
		{name: "exact path longer", authority: "reviews", path: "/exact/more", want: "v1"},
		{name: "case insensitive prefix", authority: "reviews", path: "/caseless/x", want: "ci"},
		{name: "path separated prefix", authority: "reviews", path: "/api/v1", want: "api"},
		{name: "path separated prefix exact", authority: "reviews", path: "/api", want: "api"},
		{name: "path separated prefix no separator", authority: "reviews", path: "/apis", want: "v1"},
		{name: "regex path whole", authority: "reviews", path: "/items/42", want: "items"},
		{name: "regex path partial", authority: "reviews", path: "/items/42/x", want: "v1"},
		{name: "method", authority: "reviews", method: "POST", path: "/m", want: "post"},
		{name: "method other", authority: "reviews", method: "GET", path: "/m", want: "v1"},
		{name: "query present", authority: "reviews", path: "/q?a=1&debug", want: "debug"},
		{name: "domain with port", authority: "reviews:80", path: "/", want: "v1"},
		{name: "domain case", authority: "REVIEWS.default.svc.cluster.local", path: "/", want: "v1"},
		{name: "vip", authority: "10.0.0.1", path: "/", want: "v1"},
		{name: "suffix wildcard", authority: "a.example.com", path: "/", want: "suffix"},
		{name: "longest suffix wins", authority: "x.api.example.com", path: "/", want: "longer-suffix"},
		{name: "prefix wildcard", authority: "internal.corp", path: "/", want: "prefix"},
		{name: "catch all", authority: "unknown:8080", path: "/", want: "any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &Request{Authority: []byte(tt.authority), Path: []byte(tt.path), Method: []byte(tt.method)}
			if tt.method == "" {
				q.Method = []byte("GET")
			}
			for k, v := range tt.headers {
				q.Headers = append(q.Headers, http1.Header{Name: []byte(k), Value: []byte(v)})
			}
			r := c.Select(q)
			if r == nil {
				t.Fatalf("got no route, want %s", tt.want)
			}
			if got := r.Clusters[0].Name; got != tt.want {
				t.Errorf("got %s (route %s), want %s", got, r.Name, tt.want)
			}
		})
	}
}

func TestSelectNoRoute(t *testing.T) {
	c, err := compileYAML(t, `
virtual_hosts:
- name: only
  domains: [a.example]
  routes: [{match: {prefix: /api}, route: {cluster: api}}]
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []*Request{
		{Authority: []byte("b.example"), Path: []byte("/api")},
		{Authority: []byte("a.example"), Path: []byte("/web")},
	} {
		if r := c.Select(q); r != nil {
			t.Errorf("%s%s: got route %s, want none (404 NR)", q.Authority, q.Path, r.Name)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{name: "weights do not sum to total", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        total_weight: 100
        clusters: [{name: a, weight: 50}, {name: b, weight: 40}]
`, want: "virtual_hosts[0].routes[0].route.weighted_clusters.total_weight: 100, but the weights sum to 90"},
		{name: "bad regex", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {safe_regex: {regex: "("}}, route: {cluster: a}}]
`, want: "virtual_hosts[0].routes[0].match.safe_regex.regex"},
		{name: "duplicate domain", yaml: `
virtual_hosts:
- {name: a, domains: [x], routes: []}
- {name: b, domains: [x], routes: []}
`, want: `virtual_hosts[1].domains[0]: domain "x" is used by two virtual hosts`},
		{name: "unknown retry condition", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: "5xx,sometimes"}}}]
`, want: `retry_on: unknown retry condition "sometimes"`},
		{name: "unsupported filter config", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.fault:
      "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
      abort: {http_status: 700}
  routes: []
`, want: "abort.http_status: 700 is not in [200, 600)"},
		{name: "weighted cluster", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - name: x
          weight: 1
          typed_per_filter_config:
            envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
`, want: "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].typed_per_filter_config: per-filter config on a weighted cluster is not supported"},
		{name: "route configuration level", yaml: `
typed_per_filter_config:
  envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 1}}
virtual_hosts: []
`, want: `typed_per_filter_config["envoy.filters.http.fault"].abort.http_status: 1`},
		{name: "legacy cors", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  cors: {allow_origin_string_match: [{safe_regex: {regex: "("}}]}
  routes: []
`, want: "virtual_hosts[0].cors.allow_origin_string_match[0].safe_regex.regex"},
		{name: "cluster header", yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: /}, route: {cluster_header: x-cluster}}]
`, want: "unsupported cluster specifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// weightedRoute compiles a catch-all route to these weighted clusters
// (a YAML flow list of {name, weight}).
func weightedRoute(t testing.TB, clusters string) *Route {
	t.Helper()
	c, err := compileYAML(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters: `+clusters+`
`)
	if err != nil {
		t.Fatal(err)
	}
	return c.Select(&Request{Authority: []byte("x"), Path: []byte("/")})
}

func TestPickClusterDistribution(t *testing.T) {
	r := weightedRoute(t, "[{name: v1, weight: 90}, {name: v2, weight: 10}]")
	// Any run of consecutive picks splits 90/10 to within a few requests,
	// wherever it starts: windows of 100 and 1,000 over 20,000 picks.
	picks := make([]string, 20000)
	for i := range picks {
		picks[i] = r.PickCluster().Name
	}
	for _, w := range []struct{ size, slack int }{{10, 1}, {100, 2}, {1000, 2}} {
		for start := 0; start+w.size <= len(picks); start += 7 {
			v2 := 0
			for _, name := range picks[start : start+w.size] {
				if name == "v2" {
					v2++
				}
			}
			if want := w.size / 10; v2 < want-w.slack || v2 > want+w.slack {
				t.Fatalf("picks %d..%d: %d of %d to v2, want %d ± %d", start, start+w.size, v2, w.size, want, w.slack)
			}
		}
	}
}

func TestPickClusterUnevenWeights(t *testing.T) {
	r := weightedRoute(t, "[{name: a, weight: 1}, {name: b, weight: 0}, {name: c, weight: 997}, {name: d, weight: 2}]")
	got := map[string]int{}
	for i := 0; i < 100000; i++ {
		got[r.PickCluster().Name]++
	}
	// A weight of 0 is never picked; 1 and 2 in 1,000 get 100 and 200 of
	// 100,000 to within two.
	if got["b"] != 0 || got["a"] < 98 || got["a"] > 102 || got["d"] < 198 || got["d"] > 202 {
		t.Errorf("got %v, want a≈100, b=0, d≈200", got)
	}
}

func TestRewrites(t *testing.T) {
	c, err := compileYAML(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /simple/}
    route: {cluster: a, prefix_rewrite: /}
  - match: {prefix: /v1}
    route:
      cluster: a
      regex_rewrite: {pattern: {regex: "^/v1/([^/]+)/(.*)$"}, substitution: "/\\2/\\1"}
  - match: {path: /old}
    redirect: {host_redirect: new.example, path_redirect: /new, https_redirect: true}
  - match: {prefix: /p}
    redirect: {prefix_rewrite: /q, port_redirect: 8080, response_code: PERMANENT_REDIRECT}
`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantPath, wantLocation string
		wantCode                           int
	}{
		{name: "prefix rewrite keeps query", path: "/simple/hello?x=1", wantPath: "/hello?x=1"},
		{name: "regex rewrite with groups", path: "/v1/users/42", wantPath: "/42/users"},
		{name: "https redirect", path: "/old?a=b", wantLocation: "https://new.example/new?a=b", wantCode: 301},
		{name: "prefix redirect with port", path: "/pages", wantLocation: "http://gw.example:8080/qages", wantCode: 308},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Select(&Request{Authority: []byte("gw.example:80"), Path: []byte(tt.path)})
			if r == nil {
				t.Fatal("no route")
			}
			if tt.wantLocation != "" {
				loc := r.Redirect.Location(r, []byte("http"), []byte("gw.example:80"), []byte(tt.path))
				code := r.Redirect.Code
				if code == 0 {
					code = 301
				}
				if loc != tt.wantLocation || code != tt.wantCode {
					t.Errorf("got %d %s, want %d %s", code, loc, tt.wantCode, tt.wantLocation)
				}
				return
			}
			if got := string(r.RewritePath(nil, []byte(tt.path))); got != tt.wantPath {
				t.Errorf("got %s, want %s", got, tt.wantPath)
			}
		})
	}
}

func TestRetryDecisions(t *testing.T) {
	tests := []struct {
		name          string
		on            string
		codes         []int
		status, grpc  int
		want          bool
		connect, rst  bool
		wantConnRetry bool
	}{
		{name: "5xx retries 503", on: "5xx", status: 503, want: true, wantConnRetry: true},
		{name: "5xx does not retry 404", on: "5xx", status: 404, wantConnRetry: true},
		{name: "gateway-error retries 502", on: "gateway-error", status: 502, want: true, wantConnRetry: true},
		{name: "gateway-error not 500", on: "gateway-error", status: 500, wantConnRetry: true},
		{name: "retriable status codes", on: "retriable-status-codes", codes: []int{503}, status: 503, want: true},
		{name: "retriable status codes other", on: "retriable-status-codes", codes: []int{503}, status: 500},
		{name: "istio default connect failure", on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", codes: []int{503}, status: 200, grpc: -1, wantConnRetry: true},
		{name: "grpc unavailable", on: "unavailable", status: 200, grpc: 14, want: true},
		{name: "grpc cancelled", on: "cancelled", status: 200, grpc: 1, want: true},
		{name: "grpc internal not listed", on: "unavailable", status: 200, grpc: 13},
		{name: "retriable-4xx is 409", on: "retriable-4xx", status: 409, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			on, err := ParseRetryOn(tt.on, "retry_on")
			if err != nil {
				t.Fatal(err)
			}
			rp := &RetryPolicy{On: on, StatusCodes: tt.codes}
			g := tt.grpc
			if g == 0 {
				g = -1
			}
			if got := rp.RetryStatus(tt.status, g); got != tt.want {
				t.Errorf("RetryStatus(%d, %d): got %v, want %v", tt.status, g, got, tt.want)
			}
			if got := rp.RetryConnectFailure(); got != tt.wantConnRetry {
				t.Errorf("RetryConnectFailure: got %v, want %v", got, tt.wantConnRetry)
			}
		})
	}
}

func TestBackOffBounds(t *testing.T) {
	rp := &RetryPolicy{BaseInterval: 25e6, MaxInterval: 250e6}
	for n := 1; n <= 6; n++ {
		ceil := rp.BaseInterval << (n - 1)
		if ceil > rp.MaxInterval {
			ceil = rp.MaxInterval
		}
		if got := rp.BackOff(n, ^uint64(0)); got >= ceil || got < 0 {
			t.Errorf("retry %d: got %v, want within [0, %v)", n, got, ceil)
		}
	}
}

func TestSelectAllocs(t *testing.T) {
	c, err := compileYAML(t, table)
	if err != nil {
		t.Fatal(err)
	}
	q := &Request{Authority: []byte("reviews.default.svc.cluster.local"), Path: []byte("/items/7"), Method: []byte("GET"),
		Headers: http1.Headers{{Name: []byte("user-agent"), Value: []byte("curl")}}}
	if n := testing.AllocsPerRun(200, func() { c.Select(q) }); n != 0 {
		t.Errorf("got %v allocs per Select, want 0", n)
	}
}

func BenchmarkPickCluster(b *testing.B) {
	r := weightedRoute(b, "[{name: v1, weight: 90}, {name: v2, weight: 10}]")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.PickCluster() == nil {
				b.Fatal("no cluster")
			}
		}
	})
}
