package proxy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
)

// rbacFilter is an HTTP RBAC filter shaped as Istio's translation emits
// it: a DENY filter before an ALLOW filter, so a DENY policy decides first.
const rbacFilters = `          - name: envoy.filters.http.rbac.deny
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: DENY
                policies:
                  ns[foo]-policy[deny-delete]-rule[0]:
                    permissions: [{and_rules: {rules: [{or_rules: {rules: [{header: {name: ":method", string_match: {exact: DELETE}}}]}}]}}]
                    principals: [{and_ids: {ids: [{any: true}]}}]
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  ns[foo]-policy[productpage]-rule[0]:
                    permissions: [{and_rules: {rules: [{or_rules: {rules: [{url_path: {path: {prefix: /productpage}}}]}}]}}]
                    principals: [{and_ids: {ids: [{any: true}]}}]
`

// TestRBACFilterDenies serves requests through DENY and ALLOW RBAC filters
// over real sockets and checks the answers and the access log: 403 "RBAC:
// access denied", flag RBAC and details naming the deciding policy.
func TestRBACFilterDenies(t *testing.T) {
	be := backend(t, nameHandler("app"))
	debug := &syncBuffer{}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access")
	accessLog := `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + logPath + `
              log_format: {text_format_source: {inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}
`
	r := startProxy(t, []testListener{{Name: "in", HCM: hcmFilters(rbacFilters+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), accessLog)}}, []testCluster{{Name: "be", Addrs: []string{be}}}, func(p *Proxy) {
		p.HTTP.Debugf = func(format string, args ...any) { fmt.Fprintf(debug, format+"\n", args...) }
	})
	c := client()
	tests := []struct {
		method, path string
		status       int
		body, log    string
	}{
		{"GET", "/productpage", 200, "app", "GET /productpage 200 - via_upstream"},
		{"GET", "/reviews", 403, "RBAC: access denied", "GET /reviews 403 RBAC rbac_access_denied_matched_policy[none]"},
		{"DELETE", "/productpage", 403, "RBAC: access denied", "DELETE /productpage 403 RBAC rbac_access_denied_matched_policy[ns[foo]-policy[deny-delete]-rule[0]]"},
	}
	for _, tt := range tests {
		status, body, _ := do(t, c, tt.method, "http://"+r.addr(t, "in")+tt.path, nil)
		if status != tt.status || body != tt.body {
			t.Errorf("%s %s: got %d %q, want %d %q", tt.method, tt.path, status, body, tt.status, tt.body)
		}
		if !waitForLog(logPath, tt.log) {
			b, _ := os.ReadFile(logPath)
			t.Errorf("access log lacks %q:\n%s", tt.log, b)
		}
	}
	if want := "rbac: DELETE /productpage from 127.0.0.1:"; !strings.Contains(debug.String(), want) ||
		!strings.Contains(debug.String(), "enforced denied, rbac_access_denied_matched_policy[ns[foo]-policy[deny-delete]-rule[0]]") {
		t.Errorf("debug log lacks the denial:\n%s", debug.String())
	}
}

// TestRBACFilterRejected checks that an RBAC config trellis-proxy cannot
// enforce (metadata of a filter it does not have) fails the listener
// with the field named, rather than serving without it.
func TestRBACFilterRejected(t *testing.T) {
	p := newProxyErr(t, []testListener{{Name: "in", HCM: hcmFilters(`          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
                  p:
                    permissions: [{any: true}]
                    principals: [{metadata: {filter: envoy.filters.http.ext_authz, path: [{key: x}], value: {string_match: {exact: a}}}}]
`+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "")}})
	if p == nil || !strings.Contains(p.Error(), "principals[0].metadata.filter: metadata of \"envoy.filters.http.ext_authz\" is not supported") {
		t.Fatalf("got %v, want the metadata principal rejected", p)
	}
}

// newProxyErr renders a bootstrap and returns New's error.
func newProxyErr(t *testing.T, listeners []testListener) error {
	t.Helper()
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, map[string]any{"Listeners": listeners, "Clusters": []testCluster{{Name: "be", Addrs: []string{"127.0.0.1:1"}}}}); err != nil {
		t.Fatal(err)
	}
	bs, err := bootstrap.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(bs, Options{})
	return err
}

// rbacPOST is onePOST's request to a path the ALLOW policy admits.
func rbacPOST() string {
	return strings.Replace(onePOST(1024), "POST /echo ", "POST /productpage/echo ", 1)
}

// TestRBACAllocs guards the RBAC filters on the hot path: an allowed
// keep-alive POST through the DENY and ALLOW filters allocates nothing.
func TestRBACAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation guard")
	}
	be := rawBackend(t, "ok")
	r := startProxy(t, []testListener{{Name: "in", HCM: hcmFilters(rbacFilters+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(t, r.addr(t, "in"), rbacPOST())
	for i := 0; i < 50; i++ {
		c.do(t)
	}
	if got := testing.AllocsPerRun(300, func() { c.do(t) }); got > 0 {
		t.Errorf("got %.1f allocations per request through the RBAC filters, want 0", got)
	}
}

// BenchmarkRequestPathRBAC is BenchmarkRequestPath through Istio-shaped
// DENY and ALLOW RBAC filters (the request is allowed).
func BenchmarkRequestPathRBAC(b *testing.B) {
	be := rawBackend(b, string(bytes.Repeat([]byte("y"), 1024)))
	r := startProxy(b, []testListener{{Name: "in", HCM: hcmFilters(rbacFilters+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := newRawClient(b, r.addr(b, "in"), rbacPOST())
	c.do(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.do(b)
	}
}
