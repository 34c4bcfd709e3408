package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRoutingFeatures(t *testing.T) {
	echo := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-remove-me", "1")
		fmt.Fprintf(w, "host=%s path=%s added=%s gone=%q", r.Host, r.URL.RequestURI(), r.Header.Get("x-added"), r.Header.Get("x-secret"))
	}))
	var mirrored atomic.Pointer[string]
	mirror := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := r.Host + " " + r.URL.Path
		mirrored.Store(&s)
	}))
	r := startProxy(t, []testListener{{Name: "gw", HCM: hcm(`            - name: simple
              domains: ["simple.zhongmingmao.io", "simple.zhongmingmao.io:*"]
              routes:
              - match: {prefix: /simple/}
                route: {cluster: echo, prefix_rewrite: /}
              - match: {safe_regex: {regex: "/re/([a-z]+)/x"}}
                route:
                  cluster: echo
                  regex_rewrite: {pattern: {regex: "^/re/([a-z]+)/x$"}, substitution: "/rewritten/\\1"}
              - match: {path: /moved}
                redirect: {path_redirect: /new, response_code: FOUND}
              - match: {path: /direct}
                direct_response: {status: 418, body: {inline_string: "teapot"}}
              - match: {prefix: /hdr}
                request_headers_to_add: [{header: {key: x-added, value: "yes"}}]
                request_headers_to_remove: [x-secret]
                response_headers_to_add: [{header: {key: x-resp, value: "1"}}]
                response_headers_to_remove: [x-remove-me]
                route: {cluster: echo, host_rewrite_literal: rewritten.example}
              - match: {prefix: /mirror}
                route:
                  cluster: echo
                  request_mirror_policies: [{cluster: mirror}]
              - match:
                  prefix: /q
                  query_parameters: [{name: v, string_match: {exact: "2"}}]
                direct_response: {status: 200, body: {inline_string: "v2"}}
              - match: {prefix: /}
                route: {cluster: echo}
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                    allow_origin_string_match: [{exact: "https://app.example"}]
                    allow_methods: GET,POST
                    max_age: "60"
            - name: wild
              domains: ["*.wild.example"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: "wildcard"}}
`, "")}}, []testCluster{{Name: "echo", Addrs: []string{echo}}, {Name: "mirror", Addrs: []string{mirror}}}, nil)
	c := client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := "http://" + r.addr(t, "gw")
	const host = "simple.zhongmingmao.io"
	tests := []struct {
		name       string
		host, path string
		hdr        map[string]string
		wantStatus int
		wantBody   string
		wantHeader [2]string
	}{
		{name: "prefix rewrite", host: host, path: "/simple/hello", wantStatus: 200, wantBody: "path=/hello"},
		{name: "regex rewrite", host: host, path: "/re/abc/x", wantStatus: 200, wantBody: "path=/rewritten/abc"},
		{name: "unknown host is 404", host: "other.example", path: "/", wantStatus: 404},
		{name: "host with port", host: host + ":8080", path: "/simple/p", wantStatus: 200, wantBody: "path=/p"},
		{name: "wildcard domain", host: "a.wild.example", path: "/", wantStatus: 200, wantBody: "wildcard"},
		{name: "redirect", host: host, path: "/moved", wantStatus: 302, wantHeader: [2]string{"Location", "http://simple.zhongmingmao.io/new"}},
		{name: "direct response", host: host, path: "/direct", wantStatus: 418, wantBody: "teapot"},
		{name: "query parameter match", host: host, path: "/q?v=2", wantStatus: 200, wantBody: "v2"},
		{name: "header manipulation", host: host, path: "/hdr", hdr: map[string]string{"x-secret": "s"}, wantStatus: 200, wantBody: `host=rewritten.example path=/hdr added=yes gone=""`, wantHeader: [2]string{"X-Resp", "1"}},
		{name: "cors simple", host: host, path: "/c", hdr: map[string]string{"Origin": "https://app.example"}, wantStatus: 200, wantHeader: [2]string{"Access-Control-Allow-Origin", "https://app.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"Host": tt.host}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			status, body, h := get(t, c, base+tt.path, hdr)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantHeader[0] != "" && h.Get(tt.wantHeader[0]) != tt.wantHeader[1] {
				t.Errorf("got %s %q, want %q", tt.wantHeader[0], h.Get(tt.wantHeader[0]), tt.wantHeader[1])
			}
			if tt.name == "header manipulation" && h.Get("X-Remove-Me") != "" {
				t.Errorf("got x-remove-me %q, want it removed", h.Get("X-Remove-Me"))
			}
		})
	}
	t.Run("rewrite after a plain request on one connection", func(t *testing.T) {
		// Regression: the rewritten path must not be built in the previous
		// request's buffer, which now holds this request's head.
		c := client()
		for i := 0; i < 3; i++ {
			if status, body, _ := get(t, c, base+"/plain", map[string]string{"Host": host}); status != 200 || !strings.Contains(body, "path=/plain") {
				t.Fatalf("got %d %q, want path=/plain", status, body)
			}
			status, body, _ := get(t, c, base+"/simple/again", map[string]string{"Host": host, "X-Long-Header": strings.Repeat("h", 300)})
			if status != 200 || !strings.Contains(body, "host=simple.zhongmingmao.io path=/again") {
				t.Fatalf("got %d %q, want host intact and path=/again", status, body)
			}
		}
	})
	t.Run("cors preflight", func(t *testing.T) {
		req, _ := http.NewRequest("OPTIONS", base+"/c", nil)
		req.Host = host
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Methods") != "GET,POST" || resp.Header.Get("Access-Control-Max-Age") != "60" {
			t.Errorf("got %d %v, want 200 with allow-methods GET,POST and max-age 60", resp.StatusCode, resp.Header)
		}
	})
	t.Run("mirror", func(t *testing.T) {
		status, _, _ := get(t, c, base+"/mirror/x", map[string]string{"Host": host})
		if status != 200 {
			t.Fatalf("got %d, want 200", status)
		}
		for i := 0; i < 200 && mirrored.Load() == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if m := mirrored.Load(); m == nil || *m != "simple.zhongmingmao.io-shadow /mirror/x" {
			t.Errorf("got mirrored %v, want simple.zhongmingmao.io-shadow /mirror/x", m)
		}
	})
}

func TestNoHealthyUpstreamAndConnectFailure(t *testing.T) {
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /dead}
                route: {cluster: dead}
              - match: {prefix: /}
                route: {cluster: empty}
`), "")}}, []testCluster{{Name: "dead", Addrs: []string{"127.0.0.1:1"}}, {Name: "empty"}}, nil)
	c := client()
	base := "http://" + r.addr(t, "out")
	if status, body, _ := get(t, c, base+"/dead", nil); status != 503 || !strings.Contains(body, "connection failure") {
		t.Errorf("got %d %q, want 503 connection failure (UF)", status, body)
	}
	if status, body, _ := get(t, c, base+"/", nil); status != 503 || body != "no healthy upstream" {
		t.Errorf("got %d %q, want 503 no healthy upstream (UH)", status, body)
	}
	_ = io.Discard
}
