package respdetail

import "testing"

func TestExplain(t *testing.T) {
	c := ForCluster("outbound|9999|v2|bill-service.ns.svc.cluster.local")
	r := ForRoute("bill-route", "/apis/networking.istio.io/v1/namespaces/ns/virtual-service/bill", "bill-service.ns.svc.cluster.local:9999")
	tests := []struct {
		name, details, want string
	}{
		{"no healthy", c.NoHealthy, "no healthy upstream in cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"max requests", c.MaxRequests, "circuit breaker open (upstream overflow: max_requests reached) for cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"pending", c.PendingOverflow, "circuit breaker open (pending queue full: max_connections and max_pending_requests reached) for cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"timeout", c.Timeout, "upstream timeout, cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"connect", c.ConnectFailure, "upstream connection failed, cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"tls", WithTransportFailure(c.ConnectFailure, "TLS error: bad certificate"), "upstream connection failed (TLS_error:_bad_certificate), cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"reset", c.Termination, "upstream reset before the response (connection terminated), cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"reset after", c.ResetAfter, "upstream reset during the response (remote reset), cluster outbound|9999|v2|bill-service.ns.svc.cluster.local"},
		{"fault", r.FaultAbort, "fault injected by VirtualService ns/bill (route bill-route)"},
		{"no route", NoRoute("9999", "bill-service.ns.svc.cluster.local:9999"), "no route matched in virtual host bill-service.ns.svc.cluster.local:9999 (route configuration 9999)"},
		{"no vhost", NoRoute("9999", ""), "no virtual host matched the request's host (route configuration 9999)"},
		{"rbac", "rbac_access_denied_matched_policy[ns[foo]-policy[deny-get]-rule[0]]", "denied by AuthorizationPolicy foo/deny-get (RBAC policy ns[foo]-policy[deny-get]-rule[0])"},
		{"rbac none", "rbac_access_denied_matched_policy[none]", "denied by AuthorizationPolicy: no ALLOW policy matched"},
		{"unknown", "something_else", "something_else"},
	}
	for _, tt := range tests {
		if got := Explain(tt.details); got != tt.want {
			t.Errorf("%s: Explain(%q):\n got %q\nwant %q", tt.name, tt.details, got, tt.want)
		}
	}
}

func TestDetailsHaveNoWhitespaceAndKeepEnvoysValueFirst(t *testing.T) {
	c := ForCluster("outbound|80||a.b.svc.cluster.local")
	r := ForRoute("r", "/apis/networking.istio.io/v1/namespaces/b/virtual-service/a", "a:80")
	for _, tt := range []struct{ got, envoy string }{
		{c.NoHealthy, NoHealthyUpstream}, {c.MaxRequests, Overflow}, {c.PendingOverflow, Overflow},
		{c.Timeout, UpstreamTimeout}, {c.NotFound, ClusterNotFound}, {r.FaultAbort, FaultAbort},
		{NoRoute("80", ""), RouteNotFound}, {WithTransportFailure(c.ConnectFailure, "x y"), "upstream_reset_before_response_started{connection_failure|x_y}"},
	} {
		if Envoy(tt.got) != tt.envoy {
			t.Errorf("Envoy(%q) = %q, want %q", tt.got, Envoy(tt.got), tt.envoy)
		}
		for _, ch := range tt.got {
			if ch == ' ' || ch == '\t' || ch == '\n' {
				t.Errorf("%q has whitespace", tt.got)
			}
		}
	}
	if got := ConfigRef("weird value"); got != "config=weird_value" {
		t.Errorf("ConfigRef: got %q", got)
	}
}
