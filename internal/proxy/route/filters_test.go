package route

import (
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
