package filter

import (
	"net/netip"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
)

func compileRBACYAML(t *testing.T, y string) (*RBAC, error) {
	t.Helper()
	var c rbacv3.RBAC
	fromYAML(t, y, &c)
	return CompileRBAC(&c, "rbac")
}

// request builds the stream of one request for the RBAC tests.
func request(method, path string, hdr map[string]string) *stream {
	return &stream{method: method, path: path, hdr: hdr, conn: Conn{
		Remote: netip.MustParseAddrPort("10.1.2.3:40000"),
		Local:  netip.MustParseAddrPort("10.9.0.7:9080"),
	}}
}

// TestRBACDecisions checks Envoy's RBAC semantics on the shapes Istio's
// translation emits: ALLOW denies when no policy matches, DENY denies when
// one does, the policy that decided is named in the details, and each
// permission and principal kind matches what Envoy matches.
func TestRBACDecisions(t *testing.T) {
	const istioAllowGetProductpage = `
rules:
  action: ALLOW
  policies:
    ns[default]-policy[get-productpage]-rule[0]:
      permissions:
      - and_rules:
          rules:
          - or_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}]}
          - or_rules: {rules: [{url_path: {path: {exact: /productpage}}}]}
      principals:
      - and_ids: {ids: [{any: true}]}
`
	const istioDenyAdmin = `
rules:
  action: DENY
  policies:
    ns[default]-policy[deny-admin]-rule[0]:
      permissions:
      - and_rules:
          rules:
          - or_rules: {rules: [{url_path: {path: {prefix: /admin}}}, {url_path: {path: {suffix: .secret, ignore_case: true}}}]}
          - not_rule: {or_rules: {rules: [{destination_port: 15000}]}}
      principals:
      - and_ids: {ids: [{any: true}]}
`
	const principals = `
rules:
  action: ALLOW
  policies:
    ns[default]-policy[from-bar]-rule[0]:
      permissions: [{any: true}]
      principals:
      - and_ids:
          ids:
          - or_ids: {ids: [{authenticated: {principal_name: {safe_regex: {regex: ".*/ns/bar/.*"}}}}]}
    ns[default]-policy[from-net]-rule[0]:
      permissions: [{any: true}]
      principals:
      - and_ids:
          ids:
          - or_ids: {ids: [{direct_remote_ip: {address_prefix: 192.168.0.0, prefix_len: 16}}]}
          - not_id: {or_ids: {ids: [{remote_ip: {address_prefix: 192.168.9.9}}]}}
    ns[default]-policy[token]-rule[0]:
      permissions: [{and_rules: {rules: [{or_rules: {rules: [{requested_server_name: {exact: app.example}}]}}, {destination_ip: {address_prefix: 10.9.0.0, prefix_len: 24}}]}}]
      principals: [{and_ids: {ids: [{header: {name: x-token, string_match: {exact: s3cret}}}]}}]
`
	bar := Conn{Remote: netip.MustParseAddrPort("10.1.2.3:1"), Local: netip.MustParseAddrPort("10.9.0.7:9080"),
		PeerCertificate: true, PeerPrincipal: "spiffe://cluster.local/ns/bar/sa/sleep"}
	tests := []struct {
		name    string
		config  string
		s       *stream
		details string // "" allowed
	}{
		{"allow: matching method and path", istioAllowGetProductpage, request("GET", "/productpage?x=1", nil), ""},
		{"allow: other method", istioAllowGetProductpage, request("POST", "/productpage", nil), noPolicy},
		{"allow: other path", istioAllowGetProductpage, request("GET", "/reviews", nil), noPolicy},
		{"allow-nothing", "rules: {action: ALLOW}", request("GET", "/", nil), noPolicy},
		{"no rules: filter passes", "{}", request("GET", "/", nil), ""},
		{"deny: prefix", istioDenyAdmin, request("GET", "/admin/users", nil), "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]"},
		{"deny: suffix ignoring case", istioDenyAdmin, request("GET", "/a/KEY.SECRET", nil), "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]"},
		{"deny: not matching", istioDenyAdmin, request("GET", "/public", nil), ""},
		{"principal: SPIFFE ID of ns bar", principals, &stream{method: "GET", path: "/", conn: bar}, ""},
		{"principal: plaintext peer is not authenticated", principals, request("GET", "/", nil), noPolicy},
		{"direct remote ip in block", principals, &stream{method: "GET", path: "/", conn: Conn{Remote: netip.MustParseAddrPort("192.168.3.4:1")}}, ""},
		{"remote ip excluded by not_id", principals, &stream{method: "GET", path: "/", remote: netip.MustParseAddr("192.168.9.9"), conn: Conn{Remote: netip.MustParseAddrPort("192.168.3.4:1")}}, noPolicy},
		{"header, sni and destination ip", principals, &stream{method: "GET", path: "/", hdr: map[string]string{"x-token": "s3cret"},
			conn: Conn{Remote: netip.MustParseAddrPort("10.1.2.3:1"), Local: netip.MustParseAddrPort("10.9.0.7:9080"), SNI: "app.example"}}, ""},
		{"header without sni", principals, request("GET", "/", map[string]string{"x-token": "s3cret"}), noPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileRBACYAML(t, tt.config)
			if err != nil {
				t.Fatal(err)
			}
			st := rbacFilter{def: c}.Decode(tt.s, nil)
			if tt.details == "" {
				if st != Continue || tt.s.answered != 0 {
					t.Errorf("got %v answered %d (%s), want allowed", st, tt.s.answered, tt.s.details)
				}
				return
			}
			if st != Stop || tt.s.answered != 403 || tt.s.details != tt.details {
				t.Errorf("got %v answered %d details %q, want 403 with %q", st, tt.s.answered, tt.s.details, tt.details)
			}
		})
	}
}

// TestRBACPerRouteAndShadow checks that a route's RBACPerRoute replaces
// the filter's rules (an empty one disables them) and that shadow and LOG
// rules only record.
func TestRBACPerRouteAndShadow(t *testing.T) {
	deny, err := compileRBACYAML(t, `{rules: {action: ALLOW}, shadow_rules: {action: DENY, policies: {p: {permissions: [{any: true}], principals: [{any: true}]}}}}`)
	if err != nil {
		t.Fatal(err)
	}
	f := rbacFilter{def: deny}
	s := request("GET", "/", nil)
	if f.Decode(s, nil) != Stop || s.answered != 403 {
		t.Fatalf("filter rules: answered %d, want 403", s.answered)
	}
	if len(s.logged) != 1 || s.logged[0] != "shadow=true allowed=false p" {
		t.Errorf("shadow log: got %q", s.logged)
	}
	var off rbacv3.RBACPerRoute
	route, err := compileRBACRoute(&off, "route")
	if err != nil {
		t.Fatal(err)
	}
	s = request("GET", "/", nil)
	if f.Decode(s, route) != Continue || s.answered != 0 {
		t.Errorf("empty RBACPerRoute: answered %d, want the filter off for the route", s.answered)
	}
	audit, err := compileRBACYAML(t, `{rules: {action: LOG, policies: {"ns[a]-policy[audit]-rule[0]": {permissions: [{url_path: {path: {exact: /x}}}], principals: [{any: true}]}}}}`)
	if err != nil {
		t.Fatal(err)
	}
	s = request("GET", "/x", nil)
	if (rbacFilter{def: audit}).Decode(s, nil) != Continue || s.answered != 0 || len(s.logged) != 1 || !strings.HasSuffix(s.logged[0], "ns[a]-policy[audit]-rule[0]") {
		t.Errorf("LOG: answered %d logged %q, want allowed and the policy logged", s.answered, s.logged)
	}
}

// TestRBACRejects checks that what trellis-proxy cannot enforce is a
// config error naming the field, never silently ignored.
func TestRBACRejects(t *testing.T) {
	tests := []struct{ config, want string }{
		{`{rules: {policies: {p: {permissions: [{any: true}], principals: [{metadata: {filter: envoy.filters.http.ext_authz, path: [{key: x}], value: {string_match: {exact: a}}}}]}}}}`,
			`rbac.rules.policies["p"].principals[0].metadata.filter: metadata of "envoy.filters.http.ext_authz" is not supported`},
		{`{rules: {policies: {p: {permissions: [{any: true}], principals: [{metadata: {filter: istio_authn, path: [{key: request.auth.claims}], value: {string_match: {exact: a}}}}]}}}}`,
			`rbac.rules.policies["p"].principals[0].metadata.path: request.auth.claims needs a claim name`},
		{`{rules: {policies: {p: {permissions: [{metadata: {filter: x}}], principals: [{any: true}]}}}}`, `rbac.rules.policies["p"].permissions[0]: permission`},
		{`{rules: {policies: {p: {permissions: [{any: true}]}}}}`, `rbac.rules.policies["p"].principals: must not be empty`},
		{`{rules: {policies: {p: {permissions: [{destination_ip: {address_prefix: nope}}], principals: [{any: true}]}}}}`, `destination_ip.address_prefix: "nope" is not an IP address`},
		{`{matcher: {}}`, `rbac: matcher and shadow_matcher are not supported`},
	}
	for _, tt := range tests {
		_, err := compileRBACYAML(t, tt.config)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.config, err, tt.want)
		}
	}
}

// BenchmarkRBACDecode measures one Istio-shaped decision (a DENY filter
// with a header and a method rule, an ALLOW filter by method and path)
// for a request both let through.
func BenchmarkRBACDecode(b *testing.B) {
	t := &testing.T{}
	deny, err := compileRBACYAML(t, `
rules:
  action: DENY
  policies:
    ns[default]-policy[deny]-rule[0]: {permissions: [{and_rules: {rules: [{any: true}]}}], principals: [{and_ids: {ids: [{or_ids: {ids: [{header: {name: x-token, string_match: {exact: blocked}}}]}}]}}]}
    ns[default]-policy[deny]-rule[1]: {permissions: [{and_rules: {rules: [{or_rules: {rules: [{header: {name: ":method", string_match: {exact: DELETE}}}]}}]}}], principals: [{and_ids: {ids: [{any: true}]}}]}
`)
	if err != nil {
		b.Fatal(err)
	}
	allow, err := compileRBACYAML(t, `
rules:
  policies:
    ns[default]-policy[allow]-rule[0]: {permissions: [{and_rules: {rules: [{or_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}]}}, {or_rules: {rules: [{url_path: {path: {exact: /productpage}}}, {url_path: {path: {prefix: /static/}}}]}}]}}], principals: [{and_ids: {ids: [{any: true}]}}]}
`)
	if err != nil {
		b.Fatal(err)
	}
	s := &benchStream{stream: *request("GET", "/static/app.css", map[string]string{"x-token": "ok"})}
	fd, fa := rbacFilter{def: deny}, rbacFilter{def: allow}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if fd.Decode(s, nil) != Continue || fa.Decode(s, nil) != Continue {
			b.Fatal("denied")
		}
	}
}

// benchStream is stream without the conversions that allocate.
type benchStream struct {
	stream
	path, method, token []byte
}

func (s *benchStream) Path() []byte {
	if s.path == nil {
		s.path = []byte(s.stream.path)
	}
	return s.path
}

func (s *benchStream) Method() []byte {
	if s.method == nil {
		s.method = []byte(s.stream.method)
	}
	return s.method
}

func (s *benchStream) Header(n string) ([]byte, bool) {
	if n != "x-token" {
		return nil, false
	}
	if s.token == nil {
		s.token = []byte(s.hdr[n])
	}
	return s.token, true
}
