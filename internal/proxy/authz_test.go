package proxy

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/proxy/admin"
	"github.com/trellis-mesh/trellis/internal/proxy/authz"
)

// TestAuthzCheckAnswersAsRequestsAre sends requests through an AUDIT, a
// DENY and an ALLOW RBAC filter over real sockets and asks authz.Check
// about the same requests from the live listeners: for each, the check's
// outcome and response code details equal what the request got (status
// and access log), and the check names the policy and rule.
func TestAuthzCheckAnswersAsRequestsAre(t *testing.T) {
	be := backend(t, nameHandler("app"))
	logPath := filepath.Join(t.TempDir(), "access")
	accessLog := `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + logPath + `
              log_format: {text_format_source: {inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %REQ(X-CASE)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"}}
`
	const audit = `          - name: envoy.filters.http.rbac.audit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: LOG
                policies:
                  ns[foo]-policy[audit-admin]-rule[0]:
                    permissions: [{url_path: {path: {prefix: /admin}}}]
                    principals: [{any: true}]
`
	const allowHeader = `          - name: envoy.filters.http.rbac.allow2
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  ns[foo]-policy[by-header]-rule[1]:
                    permissions: [{header: {name: x-case, string_match: {exact: ok}}}]
                    principals: [{any: true}]
`
	r := startProxy(t, []testListener{{Name: "in", HCM: hcmFilters(audit+rbacFilters+allowHeader+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), accessLog)}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	c := client()
	tests := []struct {
		name, method, path, header string
		reason                     string
	}{
		{"allowed by both ALLOW filters", "GET", "/productpage", "ok", "allowed by ALLOW policy foo/by-header rule 1"},
		{"no ALLOW policy matched", "GET", "/reviews", "ok", "no ALLOW policy matched"},
		{"DENY before ALLOW", "DELETE", "/productpage", "ok", "denied by DENY policy foo/deny-delete rule 0"},
		{"second ALLOW filter denies", "GET", "/productpage", "no", "no ALLOW policy matched"},
		{"audited, then denied", "GET", "/admin", "ok", "no ALLOW policy matched"},
	}
	for _, tt := range tests {
		status, _, _ := do(t, c, tt.method, "http://"+r.addr(t, "in")+tt.path, map[string]string{"X-Case": tt.header})
		a, err := authz.Check(r.p.Listeners.Listeners(), authz.Query{Listener: "in", Method: tt.method, Path: tt.path,
			Headers: []authz.Header{{Name: "X-Case", Value: tt.header}}})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if a.Allowed != (status == 200) {
			t.Errorf("%s: check says allowed=%v, the request got %d", tt.name, a.Allowed, status)
		}
		if a.Reason != tt.reason {
			t.Errorf("%s: reason %q, want %q", tt.name, a.Reason, tt.reason)
		}
		details := a.Details
		if a.Allowed {
			details = "via_upstream"
		}
		line := strings.Join([]string{tt.method, tt.path, tt.header, itoa(status), details}, " ")
		if !waitForLog(logPath, line) {
			b, _ := os.ReadFile(logPath)
			t.Errorf("%s: access log lacks %q (the check's details):\n%s", tt.name, line, b)
		}
	}
	a, err := authz.Check(r.p.Listeners.Listeners(), authz.Query{Listener: "in", Path: "/admin/x", Headers: []authz.Header{{Name: "x-case", Value: "ok"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Verdicts) == 0 || a.Verdicts[0].Action != "AUDIT" || a.Verdicts[0].Policy == nil || a.Verdicts[0].Policy.Policy != "audit-admin" {
		t.Errorf("the audit filter's match is not reported: %+v", a.Verdicts)
	}
	if _, err := authz.Check(r.p.Listeners.Listeners(), authz.Query{Listener: "nope"}); err == nil || !strings.Contains(err.Error(), "it has in (") {
		t.Errorf("an unknown listener: got %v, want an error listing the listeners", err)
	}
	l, err := authz.Policies(r.p.Listeners.Listeners(), "in")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range l.Policies {
		got = append(got, p.Action+" "+p.Namespace+"/"+p.Name)
	}
	if want := "AUDIT foo/audit-admin,DENY foo/deny-delete,ALLOW foo/by-header,ALLOW foo/productpage"; strings.Join(got, ",") != want {
		t.Errorf("policies %s, want %s", strings.Join(got, ","), want)
	}
}

// FuzzAuthzCheck feeds /debug/authz/check query strings to the parser and
// the check against a live listener with RBAC filters: whatever the
// input, an answer has a reason or the input is rejected with an error.
func FuzzAuthzCheck(f *testing.F) {
	for _, s := range []string{"listener=in&method=DELETE&path=/productpage", "listener=in&path=//a/../b?x#y&header=x-forwarded-for:1.2.3.4",
		"listener=in&principal=spiffe://cluster.local/ns/a/sa/b&namespace=a&source_ip=::1&sni=x&port=1", "listener=in&header=:path:/x", "port=99999"} {
		f.Add(s)
	}
	// The check sends nothing: the cluster's address is never dialled.
	be := "127.0.0.1:1"
	r := startProxy(f, []testListener{{Name: "in", HCM: hcmFilters(rbacFilters+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := admin.ParseAuthzQuery(v)
		if err != nil {
			return
		}
		a, err := authz.Check(r.p.Listeners.Listeners(), q)
		if err == nil && a.Reason == "" {
			t.Errorf("%q: an answer without a reason: %+v", raw, a)
		}
	})
}
