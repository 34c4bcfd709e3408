package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// get sends a request and returns status, body and headers.
func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	return do(t, c, "GET", url, hdr)
}

// do sends a request without body; hdr may set Host.
func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header
}

func TestWeightedClustersSplit(t *testing.T) {
	v1 := backend(t, nameHandler("v1"))
	v2 := backend(t, nameHandler("v2"))
	tests := []struct {
		name   string
		w1, w2 int
	}{
		{name: "bill-service 90/10", w1: 90, w2: 10},
		{name: "even 50/50", w1: 50, w2: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(fmt.Sprintf(`              - match: {prefix: /}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: v1, weight: %d}
                    - {name: v2, weight: %d}
`, tt.w1, tt.w2)), "")}}, []testCluster{{Name: "v1", Addrs: []string{v1}}, {Name: "v2", Addrs: []string{v2}}},
				func(p *Proxy) { p.HTTP.Rand = newRand(7).Uint64 })
			c := client()
			n1 := 0
			for i := 0; i < 1000; i++ {
				_, body, _ := get(t, c, "http://"+r.addr(t, "out")+"/", nil)
				if body == "v1" {
					n1++
				}
			}
			got := float64(n1) / 10
			if got < float64(tt.w1)-3 || got > float64(tt.w1)+3 {
				t.Errorf("got %.1f%% to v1, want %d%% ± 3", got, tt.w1)
			}
		})
	}
}

func TestRetriesAndTimeouts(t *testing.T) {
	var calls atomic.Int64
	flaky := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Header.Get("X-Fail") == "always" || (r.Header.Get("X-Fail") == "once" && n%2 == 1) {
			w.WriteHeader(503)
			io.WriteString(w, "busy")
			return
		}
		if d, err := time.ParseDuration(r.Header.Get("X-Sleep")); err == nil {
			time.Sleep(d)
		}
		fmt.Fprintf(w, "ok after %d", n)
	}))
	logPath := filepath.Join(t.TempDir(), "access.log")
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /retry}
                route:
                  cluster: flaky
                  timeout: 2s
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 2
                    retry_back_off: {base_interval: 0.001s}
              - match: {prefix: /noretry}
                route: {cluster: flaky, timeout: 2s}
              - match: {prefix: /slow}
                route: {cluster: flaky, timeout: 0.1s}
              - match: {prefix: /pertry}
                route:
                  cluster: flaky
                  timeout: 3s
                  retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.1s, retry_back_off: {base_interval: 0.001s}}
              - match: {prefix: /}
                route: {cluster: missing}
`), `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: `+logPath+`
              log_format: {text_format_source: {inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\n"}}
`)}}, []testCluster{{Name: "flaky", Addrs: []string{flaky}}}, nil)
	c := client()
	base := "http://" + r.addr(t, "out")
	tests := []struct {
		name       string
		path       string
		hdr        map[string]string
		wantStatus int
		wantBody   string
		wantLog    string
	}{
		{name: "upstream fails once then succeeds", path: "/retry", hdr: map[string]string{"X-Fail": "once"}, wantStatus: 200, wantBody: "ok after", wantLog: "/retry 200 - 2"},
		{name: "retries exhausted", path: "/retry", hdr: map[string]string{"X-Fail": "always"}, wantStatus: 503, wantBody: "busy", wantLog: "/retry 503 URX 3"},
		{name: "x-envoy-max-retries 0 disables retries", path: "/retry", hdr: map[string]string{"X-Fail": "always", "x-envoy-max-retries": "0"}, wantStatus: 503, wantLog: "/retry 503 URX 1"},
		{name: "no retry policy", path: "/noretry", hdr: map[string]string{"X-Fail": "always"}, wantStatus: 503, wantBody: "busy", wantLog: "/noretry 503 - 1"},
		{name: "route timeout is 504 UT", path: "/slow", hdr: map[string]string{"X-Sleep": "3s"}, wantStatus: 504, wantBody: "upstream request timeout", wantLog: "/slow 504 UT 1"},
		{name: "x-envoy-upstream-rq-timeout-ms extends the timeout", path: "/slow", hdr: map[string]string{"X-Sleep": "200ms", "x-envoy-upstream-rq-timeout-ms": "3000"}, wantStatus: 200, wantBody: "ok after", wantLog: "/slow 200 - 1"},
		{name: "per-try timeout is retried", path: "/pertry", hdr: map[string]string{"X-Sleep": "3s"}, wantStatus: 504, wantLog: "/pertry 504 UT,URX 2"},
		{name: "unknown cluster is 503 NC", path: "/x", wantStatus: 503, wantLog: "/x 503 NC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := get(t, c, base+tt.path, tt.hdr)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if !waitForLog(logPath, tt.wantLog) {
				b, _ := os.ReadFile(logPath)
				t.Errorf("access log lacks %q:\n%s", tt.wantLog, b)
			}
		})
	}
}

// waitForLog waits briefly for a line containing want (log writes follow
// the response).
func waitForLog(path, want string) bool {
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, want) {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestFaultInjection(t *testing.T) {
	be := backend(t, nameHandler("app"))
	logPath := filepath.Join(t.TempDir(), "access.log")
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(`            - name: canary
              domains: ["*"]
              routes:
              - match:
                  prefix: /
                  headers: [{name: user, string_match: {exact: jesse}}]
                route: {cluster: be}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    delay: {fixed_delay: 0.2s, percentage: {numerator: 100}}
              - match: {prefix: /}
                route: {cluster: be}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 500, percentage: {numerator: 50}}
`, `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: `+logPath+`
`)}}, []testCluster{{Name: "be", Addrs: []string{be}}}, func(p *Proxy) { p.HTTP.Rand = newRand(11).Uint64 })
	c := client()
	base := "http://" + r.addr(t, "out")
	start := time.Now()
	status, body, _ := get(t, c, base+"/", map[string]string{"user": "jesse"})
	if took := time.Since(start); status != 200 || body != "app" || took < 200*time.Millisecond {
		t.Fatalf("jesse: got %d %q after %v, want 200 app after >= 200ms", status, body, took)
	}
	aborted := 0
	const n = 400
	for i := 0; i < n; i++ {
		status, body, _ := get(t, c, base+"/", nil)
		switch {
		case status == 500 && body == "fault filter abort":
			aborted++
		case status == 200 && body == "app":
		default:
			t.Fatalf("got %d %q, want 500 fault filter abort or 200 app", status, body)
		}
	}
	if pct := float64(aborted) * 100 / n; pct < 38 || pct > 62 {
		t.Errorf("got %.1f%% aborted, want 50%% ± 12", pct)
	}
	var b []byte
	for i := 0; i < 200; i++ { // lines are written asynchronously
		b, _ = os.ReadFile(logPath)
		if strings.Count(string(b), "\n") >= n+1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi := strings.Count(string(b), `" 500 FI `); fi != aborted {
		t.Errorf("got %d access log lines with 500 FI, want %d", fi, aborted)
	}
	if !strings.Contains(string(b), `" 200 DI `) {
		t.Errorf("access log lacks the delayed request with flag DI:\n%.500s", b)
	}
}
