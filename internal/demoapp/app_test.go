package demoapp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	backend := httptest.NewServer((&App{Name: "bill-service-v2"}).Handler())
	defer backend.Close()
	app := &App{Name: "bill-service-v1", Getenv: func(k string) string {
		if k == "HOSTNAME" {
			return "bill-1"
		}
		return ""
	}}
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	tests := []struct {
		name, path string
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{"root names the app", "/", nil, 200, "this is bill-service-v1\n"},
		{"any path names the app", "/some/page", nil, 200, "this is bill-service-v1\n"},
		{"version falls back", "/env/version", nil, 200, "v1\n"},
		{"env var", "/env/HOSTNAME", nil, 200, "bill-1\n"},
		{"headers echoed", "/headers", http.Header{"User": {"jesse"}}, 200, "User: jesse"},
		{"fetch calls another service", "/fetch?url=" + backend.URL, nil, 200, "this is bill-service-v2\n"},
		{"fetch needs url", "/fetch", nil, 400, "url query parameter is required"},
		{"healthz", "/healthz", nil, 200, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestLoadSummarisesAnswers(t *testing.T) {
	var n atomic.Int64
	v1 := (&App{Name: "bill-service-v1"}).Handler()
	v2 := (&App{Name: "bill-service-v2"}).Handler()
	fail := (&App{Name: "broken", FailPercent: 100, FailStatus: 500}).Handler()
	// Every fourth call to v2, every tenth fails: a known split.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		switch {
		case i%10 == 0:
			fail.ServeHTTP(w, r)
		case i%4 == 0:
			v2.ServeHTTP(w, r)
		default:
			v1.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	res, err := Load{URL: srv.URL, Calls: 200, Concurrency: 4}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// i in 1..200: multiples of 10 fail (20); multiples of 4 not of 10 go to v2 (50-10=40).
	want := map[string]int{"HTTP 500": 20, "this is bill-service-v2": 40, "this is bill-service-v1": 140}
	for k, v := range want {
		if got := res.Answers[k]; got != v {
			t.Errorf("answers[%q]: got %d, want %d", k, got, v)
		}
	}
	if got := res.Percent("this is bill-service-v1"); got != 70 {
		t.Errorf("percent v1: got %g, want 70", got)
	}
	if res.Status[500] != 20 || res.Status[200] != 180 {
		t.Errorf("status: got %v, want 180×200 and 20×500", res.Status)
	}
	if res.P99ms < res.P50ms || res.MaxMs < res.P99ms {
		t.Errorf("latency order: got p50 %g p99 %g max %g", res.P50ms, res.P99ms, res.MaxMs)
	}
}

func TestDelayAndFailure(t *testing.T) {
	slow := httptest.NewServer((&App{Name: "slow", Delay: 50 * time.Millisecond}).Handler())
	defer slow.Close()
	res, err := Load{URL: slow.URL, Calls: 4, Concurrency: 2}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.MinMs < 50 {
		t.Errorf("min latency: got %gms, want at least the 50ms delay", res.MinMs)
	}
	bad := httptest.NewServer((&App{Name: "bad", FailPercent: 100}).Handler())
	defer bad.Close()
	res, err = Load{URL: bad.URL, Calls: 5}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Answers["HTTP 503"]; got != 5 {
		t.Errorf("got %d× HTTP 503 (%v), want 5", got, res.Answers)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		app  App
		want string
	}{
		{"no name", App{}, "name: required"},
		{"percent", App{Name: "a", FailPercent: 120}, "fail-percent: got 120"},
		{"status", App{Name: "a", FailStatus: 42}, "fail-status: got 42"},
		{"ok", App{Name: "a"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.app.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}
