package proxy

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilterOrder serves one route configuration through two listeners
// whose http_filters differ only in order and checks Envoy's documented
// behaviour for each: filters decode in config order, the first to answer
// ends the chain, and a filter's response headers (CORS's) reach only the
// responses of filters after it and the upstream's.
func TestFilterOrder(t *testing.T) {
	be := backend(t, nameHandler("app"))
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close()
	const vhosts = `            - name: all
              domains: ["*"]
              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                  allow_origin_string_match: [{exact: "https://app.example"}]
                  allow_methods: GET,POST
                  expose_headers: x-backend
                  max_age: "60"
              routes:
              - match: {prefix: /abort}
                route: {cluster: be}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 503, percentage: {numerator: 100}}
              - match: {prefix: /delay}
                route: {cluster: be}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    delay: {fixed_delay: 0.01s, percentage: {numerator: 100}}
              - match: {prefix: /down}
                route: {cluster: down}
              - match: {prefix: /}
                route: {cluster: be}
`
	dir := t.TempDir()
	accessLog := func(name string) string {
		return `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + filepath.Join(dir, name) + `
              log_format: {text_format_source: {inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}
`
	}
	clusters := []testCluster{{Name: "be", Addrs: []string{be}}, {Name: "down", Addrs: []string{down}}}
	addrs := map[string]string{}
	for name, filters := range map[string]string{
		"cors-first":  corsFilter + faultFilter + routerFilter,
		"fault-first": faultFilter + corsFilter + routerFilter,
	} {
		r := startProxy(t, []testListener{{Name: "out", HCM: hcmFilters(filters, vhosts, accessLog(name))}}, clusters, nil)
		addrs[name] = r.addr(t, "out")
	}

	const origin = "https://app.example"
	preflight := map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"}
	simple := map[string]string{"Origin": origin}
	type want struct {
		status int
		body   string
		// allowOrigin is the access-control-allow-origin header ("" none);
		// allowMethods likewise.
		allowOrigin, allowMethods string
		log                       string
	}
	tests := []struct {
		name         string
		method, path string
		hdr          map[string]string
		corsFirst    want
		faultFirst   want
	}{
		{
			name: "preflight to an aborting route", method: "OPTIONS", path: "/abort", hdr: preflight,
			// CORS answers the preflight before fault sees it.
			corsFirst: want{status: 200, allowOrigin: origin, allowMethods: "GET,POST", log: "OPTIONS /abort 200 -"},
			// The abort comes first; CORS never decodes, so adds nothing.
			faultFirst: want{status: 503, body: "fault filter abort", log: "OPTIONS /abort 503 FI"},
		},
		{
			name: "simple request to an aborting route", method: "GET", path: "/abort", hdr: simple,
			// CORS decoded first, so its headers reach fault's local reply.
			corsFirst:  want{status: 503, body: "fault filter abort", allowOrigin: origin, log: "GET /abort 503 FI"},
			faultFirst: want{status: 503, body: "fault filter abort", log: "GET /abort 503 FI"},
		},
		{
			name: "preflight to a delaying route", method: "OPTIONS", path: "/delay", hdr: preflight,
			corsFirst: want{status: 200, allowOrigin: origin, allowMethods: "GET,POST", log: "OPTIONS /delay 200 -"},
			// Delayed by fault, then answered by CORS.
			faultFirst: want{status: 200, allowOrigin: origin, allowMethods: "GET,POST", log: "OPTIONS /delay 200 DI"},
		},
		{
			name: "simple request forwarded", method: "GET", path: "/ok", hdr: simple,
			corsFirst:  want{status: 200, body: "app", allowOrigin: origin, log: "GET /ok 200 -"},
			faultFirst: want{status: 200, body: "app", allowOrigin: origin, log: "GET /ok 200 -"},
		},
		{
			name: "router's local reply gets CORS headers in both orders", method: "GET", path: "/down", hdr: simple,
			corsFirst:  want{status: 503, body: "connection failure", allowOrigin: origin, log: "GET /down 503 UF"},
			faultFirst: want{status: 503, body: "connection failure", allowOrigin: origin, log: "GET /down 503 UF"},
		},
		{
			name: "no origin, no CORS headers", method: "GET", path: "/abort",
			corsFirst:  want{status: 503, body: "fault filter abort", log: "GET /abort 503 FI"},
			faultFirst: want{status: 503, body: "fault filter abort", log: "GET /abort 503 FI"},
		},
	}
	c := client()
	for _, tt := range tests {
		for _, l := range []struct {
			listener string
			want     want
		}{{"cors-first", tt.corsFirst}, {"fault-first", tt.faultFirst}} {
			t.Run(tt.name+"/"+l.listener, func(t *testing.T) {
				status, body, h := do(t, c, tt.method, "http://"+addrs[l.listener]+tt.path, tt.hdr)
				w := l.want
				if status != w.status || !strings.Contains(body, w.body) {
					t.Fatalf("got %d %q, want %d containing %q", status, body, w.status, w.body)
				}
				if got := h.Get("Access-Control-Allow-Origin"); got != w.allowOrigin {
					t.Errorf("got access-control-allow-origin %q, want %q", got, w.allowOrigin)
				}
				if got := h.Get("Access-Control-Allow-Methods"); got != w.allowMethods {
					t.Errorf("got access-control-allow-methods %q, want %q", got, w.allowMethods)
				}
				// Envoy's CORS encode adds expose-headers wherever it adds
				// allow-origin, preflight answers included.
				wantExpose := ""
				if w.allowOrigin != "" {
					wantExpose = "x-backend"
				}
				if got := h.Get("Access-Control-Expose-Headers"); got != wantExpose {
					t.Errorf("got access-control-expose-headers %q, want %q", got, wantExpose)
				}
				logPath := filepath.Join(dir, l.listener)
				if !waitForLog(logPath, w.log) {
					b, _ := os.ReadFile(logPath)
					t.Errorf("access log lacks %q:\n%s", w.log, b)
				}
			})
		}
	}
}

// TestFilterChainAllocs guards the filter chain on the hot path: a
// keep-alive POST from an allowed origin through [cors, fault, router]
// with a per-route CORS policy and fault config that does not trigger.
func TestFilterChainAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation guard")
	}
	be := rawBackend(t, "ok")
	r := startProxy(t, []testListener{{Name: "out", HCM: hcmFilters(corsFilter+faultFilter+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be, timeout: 0s}
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                    allow_origin_string_match: [{exact: "https://app.example"}]
                    allow_credentials: true
                    expose_headers: x-backend
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 503, percentage: {numerator: 0}}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	if _, _, h := get(t, client(), "http://"+r.addr(t, "out")+"/", map[string]string{"Origin": "https://app.example"}); h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("got headers %v, want the CORS policy applied", h)
	}
	req := strings.Replace(onePOST(64), "\r\n\r\n", "\r\nOrigin: https://app.example\r\n\r\n", 1)
	c := newRawClient(t, r.addr(t, "out"), req)
	for i := 0; i < 50; i++ {
		c.do(t)
	}
	got := testing.AllocsPerRun(300, func() { c.do(t) })
	if got > 0 {
		t.Errorf("got %.1f allocations per request through the filter chain, want 0", got)
	}
}
