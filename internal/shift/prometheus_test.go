package shift

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDefaultQuery(t *testing.T) {
	got := DefaultQuery("worker-service.default.svc.cluster.local", "frontend-deployment", time.Minute)
	want := `sum(rate(istio_requests_total{reporter="destination",destination_service="worker-service.default.svc.cluster.local",source_workload="frontend-deployment"}[1m]))`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestPrometheusSampler answers the HTTP API the way Prometheus does.
func TestPrometheusSampler(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    float64
		wantErr string
	}{
		{"seed answer", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"destination_service":"worker-service.default.svc.cluster.local","source_app":"frontend","source_workload":"frontend-deployment"},"value":[1544404907.503,"18.892886390062788"]}]}}`, 18.892886390062788, ""},
		{"several series are summed", 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"2.5"]},{"metric":{"a":"2"},"value":[1,"4"]}]}}`, 6.5, ""},
		{"no series is zero", 200, `{"status":"success","data":{"resultType":"vector","result":[]}}`, 0, ""},
		{"scalar", 200, `{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}`, 7, ""},
		{"range vector", 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, 0, "want an instant vector"},
		{"bad query", 400, `{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`, 0, "parse error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotQuery string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v1/query" {
					http.NotFound(w, r)
					return
				}
				_ = r.ParseForm()
				gotQuery = r.Form.Get("query")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			q := DefaultQuery("worker-service.default.svc.cluster.local", "frontend-deployment", time.Minute)
			s, err := NewPrometheusSampler(srv.URL, q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Rate(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rate: got %v, want %v", got, tc.want)
			}
			if gotQuery != q {
				t.Errorf("query sent: got %q, want %q", gotQuery, q)
			}
		})
	}
}
