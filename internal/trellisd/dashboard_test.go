package trellisd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/dashboard"
	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

// TestDashboardShowsConnectedProxies: trellisd's dashboard scrapes a
// connected proxy where its node metadata says (PROMETHEUS_ADDRESS), and
// shows the traffic, the greeter's configured split and the proxy's sync
// state; it answers only to IP or localhost Host headers.
func TestDashboardShowsConnectedProxies(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	// The proxy's Prometheus endpoint: 10 more calls at every scrape.
	var calls atomic.Int64
	stats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(10)
		labels := `reporter="source",source_workload="client-1",source_workload_namespace="default",destination_service="` + greeterHost +
			`",destination_workload="unknown",request_protocol="http",response_code="200",response_flags="-",connection_security_policy="unknown"`
		fmt.Fprintf(w, "# TYPE istio_requests_total counter\nistio_requests_total{%s} %d\n", labels, n)
		fmt.Fprintf(w, "# TYPE istio_request_duration_milliseconds histogram\n")
		for _, le := range []string{"1", "5", "+Inf"} {
			fmt.Fprintf(w, "istio_request_duration_milliseconds_bucket{%s,le=%q} %d\n", labels, le, n)
		}
		fmt.Fprintf(w, "istio_request_duration_milliseconds_sum{%s} %d\nistio_request_duration_milliseconds_count{%s} %d\n", labels, n, labels, n)
	}))
	defer stats.Close()

	s := startTrellisd(t, Options{ConfigDir: dir, DashboardAddress: "127.0.0.1:0",
		DashboardScrapeInterval: 100 * time.Millisecond, DashboardWindow: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "WORKLOAD_NAME": "client-1",
		"LABELS": map[string]any{"app": "client"}, "PROMETHEUS_ADDRESS": strings.TrimPrefix(stats.URL, "http://")})
	node := &corev3.Node{Id: "sidecar~10.1.1.1~client-1.default~default.svc.cluster.local", Metadata: md}
	c, err := fakeproxy.Dial(ctx, dialADS(t, s.XDSAddr()), node, fakeproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := "http://" + s.DashboardAddr()

	eventually(t, func() error {
		var g dashboard.GraphResponse
		getJSON(t, base+"/api/graph", &g)
		for _, e := range g.Edges {
			if e.Source == "workload/default/client-1" && e.Target == "service/"+greeterHost && e.RPS > 0 && e.P99 != nil {
				return nil
			}
		}
		return errorf("graph: got edges %+v, scrapes %+v; want client-1 -> greeter with traffic", g.Edges, g.Scrapes)
	})
	eventually(t, func() error {
		var d dashboard.ServiceDetail
		getJSON(t, base+"/api/services/default/greeter", &d)
		if fmt.Sprint(d.Split.Configured) != "[{v1 90 0} {v2 10 0}]" {
			return errorf("configured split: got %v, want v1 90, v2 10", d.Split.Configured)
		}
		var p dashboard.ProxiesResponse
		getJSON(t, base+"/api/proxies", &p)
		if len(p.Proxies) != 1 || p.Proxies[0].Sync != dashboard.Synced || p.Proxies[0].Workload != "client-1" {
			return errorf("proxies: got %+v, want client-1 SYNCED", p.Proxies)
		}
		return nil
	})

	page := httpGet(t, base+"/")
	if !strings.Contains(string(page), "<title>Trellis dashboard</title>") {
		t.Errorf("GET /: got %.200s, want the dashboard page", page)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/graph", nil)
	req.Host = "dashboard.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Host dashboard.example.com: got %s, want 403 (DNS rebinding)", resp.Status)
	}
	resp, err = http.Get(base + "/api/services/default/nothing")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "no service nothing in namespace default") {
		t.Errorf("unknown service: got %s %q, want 404 naming it", resp.Status, b)
	}
}
