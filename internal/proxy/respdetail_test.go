package proxy

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResponseCodeDetailsNameTheirCause drives the proxy's local replies
// (no route, no virtual host, no cluster, no healthy upstream, connection
// failure, fault abort) and reads %RESPONSE_CODE_DETAILS% from the access
// log and from the failure ring: each gives Envoy's value first, then the
// route configuration, virtual host, cluster or VirtualService involved.
// A fault abort is counted in istio_requests_total against the route's
// destination service, as Istio does, not "unknown".
func TestResponseCodeDetailsNameTheirCause(t *testing.T) {
	be := backend(t, nameHandler("app"))
	down := closedPort(t)
	const uh = "outbound|9999|v2|bill-service.ns1.svc.cluster.local"
	const v1 = "outbound|9999|v1|bill-service.ns1.svc.cluster.local"
	vhosts := `            - name: bill-service.ns1.svc.cluster.local:9999
              domains: ["bill-service", "bill-service:9999"]
              routes:
              - name: bill-route
                match: {prefix: /fault}
                metadata:
                  filter_metadata:
                    istio: {config: /apis/networking.istio.io/v1/namespaces/ns1/virtual-service/bill}
                route: {cluster: "` + v1 + `"}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 503, percentage: {numerator: 100}}
              - match: {prefix: /uh}
                route: {cluster: "` + uh + `"}
              - match: {prefix: /nc}
                route: {cluster: missing}
              - match: {prefix: /down}
                route: {cluster: down}
              - match: {prefix: /ok}
                route: {cluster: "` + v1 + `"}
`
	logPath := filepath.Join(t.TempDir(), "access")
	accessLog := `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + logPath + `
              log_format: {text_format_source: {inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_CLUSTER%\n"}}
`
	meta := `    metadata:
      filter_metadata:
        istio:
          services: [{host: bill-service.ns1.svc.cluster.local, name: bill-service, namespace: ns1}]
`
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhosts, accessLog)}}, []testCluster{
		{Name: v1, Addrs: []string{be}, Extra: meta},
		{Name: uh, Extra: meta},
		{Name: "down", Addrs: []string{down}},
	}, nil)
	c := client()
	tests := []struct {
		host, path string
		status     int
		log        string
	}{
		{"bill-service", "/ok", 200, "/ok 200 - via_upstream " + v1},
		{"bill-service:9999", "/fault", 503, "/fault 503 FI fault_filter_abort;virtual_service=ns1/bill;route=bill-route;virtual_host=bill-service.ns1.svc.cluster.local:9999 " + v1},
		{"bill-service", "/uh", 503, "/uh 503 UH no_healthy_upstream;cluster=" + uh + " " + uh},
		{"bill-service", "/nc", 503, "/nc 503 NC cluster_not_found;cluster=missing missing"},
		{"bill-service", "/down", 503, "/down 503 UF upstream_reset_before_response_started{connection_failure};cluster=down down"},
		{"bill-service", "/nowhere", 404, "/nowhere 404 NR route_not_found;route_config=test;virtual_host=bill-service.ns1.svc.cluster.local:9999 -"},
		{"other", "/ok", 404, "/ok 404 NR route_not_found;route_config=test;no_virtual_host -"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://"+r.addr(t, "out")+tt.path, nil)
		req.Host = tt.host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: got %d, want %d", tt.host, tt.path, resp.StatusCode, tt.status)
		}
	}
	var lines []string
	waitFor(t, "access log", func() error {
		b, _ := os.ReadFile(logPath)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < len(tests) {
			return fmt.Errorf("%d lines", len(lines))
		}
		return nil
	})
	// A request is logged after its response is sent: the order of lines
	// is not the order of the requests.
	logged := map[string]bool{}
	for _, l := range lines {
		logged[l] = true
	}
	for _, tt := range tests {
		if !logged[tt.log] {
			t.Errorf("no log line %q in:\n%s", tt.log, strings.Join(lines, "\n"))
		}
	}

	// The ring holds the failures only, with their causes.
	s := r.p.Failures.Snapshot()
	if s.Total != uint64(len(tests)-1) || len(s.Failures) != len(tests)-1 {
		t.Fatalf("got %d failures (total %d), want %d", len(s.Failures), s.Total, len(tests)-1)
	}
	for _, tt := range tests[1:] {
		want := strings.Fields(tt.log)
		found := false
		for _, f := range s.Failures {
			if f.Path != tt.path || f.Authority != tt.host {
				continue
			}
			found = true
			if f.Status != tt.status || f.ResponseFlags != want[2] || f.Details != want[3] || !f.ProxyMade || f.Direction != "outbound" {
				t.Errorf("failure: got %+v, want %s", f, tt.log)
			}
			if tt.path == "/fault" && (f.Route != "bill-route" || f.UpstreamCluster != v1 || f.DestinationService != "bill-service.ns1.svc.cluster.local") {
				t.Errorf("fault failure: got %+v", f)
			}
		}
		if !found {
			t.Errorf("no failure for %s %s in %+v", tt.host, tt.path, s.Failures)
		}
	}

	fams := scrape(t, r)
	if n, ok := sample(fams, "istio_requests_total", map[string]string{"response_flags": "FI"}); !ok || n != 1 {
		t.Fatalf("FI series: got %v (found %t), want 1; series %v", n, ok, labelsOf(fams, "istio_requests_total"))
	}
	for _, l := range labelsOf(fams, "istio_requests_total") {
		if l["response_flags"] == "FI" && (l["destination_service"] != "bill-service.ns1.svc.cluster.local" || l["destination_service_name"] != "bill-service" || l["destination_service_namespace"] != "ns1" || l["response_code"] != "503") {
			t.Errorf("FI series labels: got %v, want destination_service bill-service.ns1.svc.cluster.local", l)
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}
