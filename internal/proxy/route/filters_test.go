package route

import (
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
)

// TestPerFilterConfigPrecedence checks Envoy's most-specific-wins order
// for typed_per_filter_config: route, virtual host, route configuration;
// and that the legacy cors fields apply only where no per-filter policy
// does, the route action's before the virtual host's.
func TestPerFilterConfigPrecedence(t *testing.T) {
	c, err := compileYAML(t, `
typed_per_filter_config:
  envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 501}}
virtual_hosts:
- name: a
  domains: [a]
  typed_per_filter_config:
    envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 502}}
  cors: {allow_methods: vhost-legacy}
  routes:
  - match: {prefix: /route}
    route: {cluster: x}
    typed_per_filter_config:
      envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 503}}
      envoy.filters.http.cors: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_methods: per-filter}
  - match: {prefix: /legacy}
    route: {cluster: x, cors: {allow_methods: route-legacy}}
  - match: {prefix: /}
    route: {cluster: x}
- name: b
  domains: [b]
  routes:
  - match: {prefix: /}
    route: {cluster: x}
`)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := filter.CompileChain([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault"}, {Name: "envoy.filters.http.cors"}, {Name: "envoy.filters.http.router"}}, "http_filters")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path  string
		wantAbort   int
		wantMethods string
	}{
		{host: "a", path: "/route", wantAbort: 503, wantMethods: "per-filter"},
		{host: "a", path: "/legacy", wantAbort: 502, wantMethods: "route-legacy"},
		{host: "a", path: "/other", wantAbort: 502, wantMethods: "vhost-legacy"},
		{host: "b", path: "/", wantAbort: 501},
	}
	for _, tt := range tests {
		r := c.Select(&Request{Authority: []byte(tt.host), Path: []byte(tt.path)})
		if got := r.Filters.For(&chain[0]).(*filter.Fault).AbortStatus; got != tt.wantAbort {
			t.Errorf("%s%s: got fault aborting %d, want %d", tt.host, tt.path, got, tt.wantAbort)
		}
		got := ""
		if cors, ok := r.Filters.For(&chain[1]).(*filter.Cors); ok {
			got = string(cors.AllowMethods)
		}
		if got != tt.wantMethods {
			t.Errorf("%s%s: got cors allow_methods %q, want %q", tt.host, tt.path, got, tt.wantMethods)
		}
	}
}

func TestPerFilterConfigErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileYAML(t, tt.yaml)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got %v, want an error starting %q", err, tt.want)
			}
		})
	}
}
