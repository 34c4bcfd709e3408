package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"github.com/trellis-mesh/trellis/internal/proxy/xdsclient"
)

var update = flag.Bool("update", false, "rewrite testdata/config_dump.golden.json")

const nodeID = "sidecar~10.1.0.9~sleep-7d9f.sidecar~sidecar.svc.cluster.local"

// loadResources reads testdata/resources.yaml into typed resources.
func loadResources(t *testing.T) map[resource.Type][]types.Resource {
	t.Helper()
	b, err := os.ReadFile("testdata/resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string][]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]resource.Type{"clusters": resource.ClusterType, "endpoints": resource.EndpointType,
		"listeners": resource.ListenerType, "routes": resource.RouteType, "secrets": resource.SecretType}
	out := map[resource.Type][]types.Resource{}
	for key, list := range raw {
		for i, r := range list {
			var a anypb.Any
			if err := protojson.Unmarshal(r, &a); err != nil {
				t.Fatalf("%s[%d]: %v", key, i, err)
			}
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			out[kinds[key]] = append(out[kinds[key]], m)
		}
	}
	return out
}

type proxy struct {
	admin   *Server
	manager *cluster.Manager
	client  *xdsclient.Client
	store   *stats.Store
	rec     *telemetry.Recorder
	drained atomic.Int32
	quit    atomic.Int32
	cache   cachev3.SnapshotCache
}

// startProxy wires what trellis-proxy wires: an ADS server (go-control-plane)
// feeding the xDS client, CDS/EDS into the cluster manager, and the admin
// servers reading all of it.
func startProxy(t *testing.T) *proxy {
	t.Helper()
	p := &proxy{store: stats.NewStore()}
	p.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), p.cache, nil))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	p.rec = telemetry.NewRecorder(nil)
	p.manager = cluster.NewManager(cluster.Options{Stats: p.store, Interner: p.rec.Interner})
	t.Cleanup(p.manager.Close)
	bs, err := bootstrap.FromFlags(bootstrap.Options{NodeID: nodeID, Namespace: "sidecar", XDSAddress: ln.Addr().String(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	// The golden dump must not depend on the random port.
	bsDump, _ := bootstrap.FromFlags(bootstrap.Options{NodeID: nodeID, Namespace: "sidecar", XDSAddress: "127.0.0.1:15010", Version: "test"})
	if err := p.manager.AddStatic(bsDump.GetStaticResources().GetClusters()); err != nil {
		t.Fatal(err)
	}
	handler := xdsclient.HandlerFunc(func(typeURL string, res map[string]*anypb.Any) error {
		switch typeURL {
		case resource.ClusterType:
			return p.manager.ApplyClusters(res)
		case resource.EndpointType:
			return p.manager.ApplyEndpoints(res)
		}
		return nil
	})
	ads, _ := bootstrap.ADSTarget(bs)
	p.client, err = xdsclient.New(xdsclient.Options{Address: ads.Address, Node: bs.GetNode(), Handler: handler})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	p.admin, err = New(Options{
		Address: "127.0.0.1:0", ReadyAddress: "127.0.0.1:0", PrometheusAddress: "127.0.0.1:0",
		ConfigSource: &XDSDump{Bootstrap: bsDump, Client: p.client, Started: time.Unix(0, 0)},
		Clusters:     p.manager, Stats: p.store, Telemetry: p.rec,
		Ready: func() bool {
			select {
			case <-p.client.Synced():
				return true
			default:
				return false
			}
		},
		Drain:   func(bool) { p.drained.Add(1) },
		Quit:    func() { p.quit.Add(1) },
		Version: "trellis-test", NodeID: nodeID,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.admin.Close() })
	return p
}

func (p *proxy) publish(t *testing.T) {
	t.Helper()
	snap, err := cachev3.NewSnapshot("v1", loadResources(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.client.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the first config")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(p.client.Resources(resource.RouteType)) == 0 || len(p.client.Resources(resource.SecretType)) == 0 || !p.manager.Warm() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for routes and endpoints")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// normalize makes a config dump byte-stable: fixed timestamps, sorted keys.
func normalize(t *testing.T, body string) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("got invalid JSON: %v", err)
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "last_updated" {
					x[k] = "2026-01-01T00:00:00Z"
					continue
				}
				x[k] = walk(e)
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	out, err := json.MarshalIndent(walk(v), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestAdminEndToEnd(t *testing.T) {
	p := startProxy(t)
	base := "http://" + p.admin.Addr()
	ready := "http://" + p.admin.ReadyAddr() + "/healthz/ready"

	if code, _ := get(t, "GET", ready); code != 503 {
		t.Errorf("before config: got /healthz/ready %d, want 503", code)
	}
	if code, body := get(t, "GET", base+"/ready"); code != 503 || strings.TrimSpace(body) != "PRE_INITIALIZING" {
		t.Errorf("before config: got /ready %d %q, want 503 PRE_INITIALIZING", code, body)
	}
	p.publish(t)
	if code, _ := get(t, "GET", ready); code != 200 {
		t.Errorf("after config: got /healthz/ready %d, want 200", code)
	}
	if code, body := get(t, "GET", base+"/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
		t.Errorf("after config: got /ready %d %q, want 200 LIVE", code, body)
	}

	t.Run("config_dump", func(t *testing.T) {
		code, body := get(t, "GET", base+"/config_dump")
		if code != 200 {
			t.Fatalf("got %d: %s", code, body)
		}
		var d adminv3.ConfigDump
		if err := protojson.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("got a dump protojson cannot read: %v", err)
		}
		wantTypes := []string{"BootstrapConfigDump", "ListenersConfigDump", "ClustersConfigDump", "RoutesConfigDump", "EndpointsConfigDump", "SecretsConfigDump"}
		if strings.Contains(body, "super-secret-private-key") || !strings.Contains(body, "[redacted]") {
			t.Errorf("got a dump with the private key, want it redacted")
		}
		if len(d.GetConfigs()) != len(wantTypes) {
			t.Fatalf("got %d configs, want %d", len(d.GetConfigs()), len(wantTypes))
		}
		for i, w := range wantTypes {
			if got := d.GetConfigs()[i].GetTypeUrl(); got != "type.googleapis.com/envoy.admin.v3."+w {
				t.Errorf("configs[%d]: got %s, want %s", i, got, w)
			}
		}
		var cds adminv3.ClustersConfigDump
		d.GetConfigs()[2].UnmarshalTo(&cds)
		if len(cds.GetDynamicActiveClusters()) != 7 || len(cds.GetStaticClusters()) != 1 || cds.GetVersionInfo() == "" {
			t.Errorf("got %d dynamic, %d static clusters, version %q; want 7, 1 and a version", len(cds.GetDynamicActiveClusters()), len(cds.GetStaticClusters()), cds.GetVersionInfo())
		}
		for _, c := range cds.GetDynamicActiveClusters() {
			if c.GetVersionInfo() == "" || c.GetLastUpdated() == nil {
				t.Errorf("got dynamic cluster without version/last_updated: %v", c)
			}
		}
		checkGolden(t, "testdata/config_dump.golden.json", normalize(t, body))
		code, body = get(t, "GET", base+"/config_dump?resource=dynamic_active_clusters")
		if code != 200 || strings.Count(body, `envoy.admin.v3.ClustersConfigDump.DynamicCluster"`) != 7 {
			t.Errorf("resource filter: got %d and %d entries, want 7", code, strings.Count(body, "DynamicCluster"))
		}
		if code, _ := get(t, "GET", base+"/config_dump?resource=nope"); code != 400 {
			t.Errorf("got %d for an unknown resource, want 400", code)
		}
	})

	t.Run("clusters", func(t *testing.T) {
		_, body := get(t, "GET", base+"/clusters")
		for _, want := range []string{
			"outbound|80||nginx.sidecar.svc.cluster.local::10.1.0.5:80::health_flags::healthy",
			"outbound|80||nginx.sidecar.svc.cluster.local::10.1.0.6:80::zone::zone-a",
			"outbound|80||nginx.sidecar.svc.cluster.local::added_via_api::true",
			"xds-grpc::added_via_api::false",
			"outbound|80|v1|nginx.sidecar.svc.cluster.local::10.1.0.5:80::rq_total::0",
		} {
			if !strings.Contains(body, want+"\n") {
				t.Errorf("got /clusters without %q", want)
			}
		}
		_, js := get(t, "GET", base+"/clusters?format=json")
		var cs adminv3.Clusters
		if err := protojson.Unmarshal([]byte(js), &cs); err != nil {
			t.Fatal(err)
		}
		if len(cs.GetClusterStatuses()) != 8 {
			t.Errorf("got %d cluster statuses, want 8", len(cs.GetClusterStatuses()))
		}
		checkGolden(t, "testdata/clusters.golden.json", normalize(t, js))
	})

	t.Run("xds", func(t *testing.T) {
		code, body := get(t, "GET", base+"/xds")
		var st struct {
			Connected bool
			Types     []struct {
				TypeURL string `json:"type_url"`
				Version string `json:"version_info"`
				Acked   uint64
			}
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || !st.Connected || len(st.Types) != 5 {
			t.Fatalf("got %d %q %v, want 5 types while connected", code, body, err)
		}
		for _, ty := range st.Types {
			if ty.Acked == 0 || ty.Version == "" {
				t.Errorf("got %+v, want an accepted version", ty)
			}
		}
	})

	t.Run("listeners", func(t *testing.T) {
		_, body := get(t, "GET", base+"/listeners")
		for _, want := range []string{"virtualOutbound::0.0.0.0:15001", "virtualInbound::0.0.0.0:15006", "10.96.0.20_6379::10.96.0.20:6379", "0.0.0.0_8443::0.0.0.0:8443"} {
			if !strings.Contains(body, want) {
				t.Errorf("got /listeners %q, want %q", body, want)
			}
		}
	})

	t.Run("stats", func(t *testing.T) {
		cl := p.manager.Get("outbound|80||nginx.sidecar.svc.cluster.local")
		h, _ := cl.Pick(nil)
		cl.Report(h, cluster.Outcome{Status: 503})
		key := &telemetry.Key{Reporter: telemetry.Source, Destination: h.Peer, Service: cl.Service, Protocol: "http", Security: "unknown"}
		p.rec.Request(key, 503, -1, "-", 2, 0, 19)
		_, body := get(t, "GET", base+"/stats")
		for _, want := range []string{
			"cluster.outbound|80||nginx.sidecar.svc.cluster.local.membership_total: 2\n",
			"cluster.outbound|80||nginx.sidecar.svc.cluster.local.upstream_rq_503: 1\n",
			"server.live: 1\n",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("got /stats without %q", want)
			}
		}
		for _, g := range []string{"server.goroutines", "server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size"} {
			_, line := get(t, "GET", base+"/stats?filter=^"+g+"$")
			v, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, g+":")))
			if err != nil || v <= 0 {
				t.Errorf("got %q for %s, want a positive gauge", line, g)
			}
		}
		_, filtered := get(t, "GET", base+"/stats?filter=upstream_rq_5xx")
		if strings.Count(filtered, "\n") != 8 {
			t.Errorf("got filtered stats %q, want one upstream_rq_5xx line per cluster", filtered)
		}
		if code, _ := get(t, "POST", base+"/reset_counters"); code != 200 {
			t.Errorf("got /reset_counters %d, want 200", code)
		}
		if _, after := get(t, "GET", base+"/stats?filter=upstream_rq_503"); !strings.Contains(after, "upstream_rq_503: 0\n") {
			t.Errorf("after reset: got %q, want the counter at 0", after)
		}
		for _, url := range []string{base + "/stats/prometheus", "http://" + p.admin.PrometheusAddr() + "/stats/prometheus"} {
			_, prom := get(t, "GET", url)
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(strings.NewReader(prom))
			if err != nil {
				t.Fatalf("%s: got invalid exposition: %v", url, err)
			}
			rq := fams["istio_requests_total"]
			if rq == nil || rq.GetMetric()[0].GetCounter().GetValue() != 1 {
				t.Fatalf("%s: got %v, want one istio request", url, rq)
			}
			labels := map[string]string{}
			for _, l := range rq.GetMetric()[0].GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["destination_service"] != "nginx.sidecar.svc.cluster.local" || labels["destination_workload"] == "unknown" {
				t.Errorf("got labels %v, want nginx's identity from cluster and endpoint metadata", labels)
			}
			found := false
			for _, m := range fams["envoy_cluster_upstream_rq"].GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["response_code"] == "503" && l["cluster_name"] == "outbound|80||nginx.sidecar.svc.cluster.local" {
					found = m.GetCounter().GetValue() == 0 // reset above
				}
			}
			if !found {
				t.Errorf("%s: got no envoy_cluster_upstream_rq{response_code=\"503\"} for nginx at 0 after the reset", url)
			}
		}
	})

	t.Run("logging", func(t *testing.T) {
		if code, _ := get(t, "GET", base+"/logging?level=debug"); code != 405 {
			t.Errorf("got %d for GET with a level, want 405", code)
		}
		code, body := get(t, "POST", base+"/logging?level=debug")
		if code != 200 || !strings.Contains(body, "  http: debug\n") {
			t.Errorf("got %d %q, want every logger at debug", code, body)
		}
		if code, _ := get(t, "POST", base+"/logging?level=loud"); code != 400 {
			t.Errorf("got %d for a bad level, want 400", code)
		}
		if code, body := get(t, "POST", base+"/logging?xds=error"); code != 200 || !strings.Contains(body, "  xds: error\n") {
			t.Errorf("got %d %q, want xds at error", code, body)
		}
	})

	t.Run("server_info and help", func(t *testing.T) {
		_, body := get(t, "GET", base+"/server_info")
		var si adminv3.ServerInfo
		if err := protojson.Unmarshal([]byte(body), &si); err != nil || si.GetState() != adminv3.ServerInfo_LIVE || si.GetVersion() != "trellis-test" {
			t.Errorf("got %v %v, want LIVE trellis-test", &si, err)
		}
		_, help := get(t, "GET", base+"/help")
		for _, ep := range []string{"/config_dump", "/clusters", "/quitquitquit", "/stats/prometheus"} {
			if !strings.Contains(help, "  "+ep+":") {
				t.Errorf("got /help without %s", ep)
			}
		}
		if code, _ := get(t, "GET", base+"/nope"); code != 404 {
			t.Errorf("got %d for an unknown path, want 404", code)
		}
	})

	t.Run("drain and quit", func(t *testing.T) {
		if code, _ := get(t, "GET", base+"/quitquitquit"); code != 405 || p.quit.Load() != 0 {
			t.Errorf("got %d for GET /quitquitquit, want 405 and no quit", code)
		}
		if code, _ := get(t, "POST", base+"/drain_listeners"); code != 200 || p.drained.Load() != 1 {
			t.Errorf("got %d, drained %d; want 200 and the drain hook called", code, p.drained.Load())
		}
		if code, _ := get(t, "GET", ready); code != 503 {
			t.Errorf("while draining: got /healthz/ready %d, want 503", code)
		}
		if code, _ := get(t, "POST", base+"/quitquitquit"); code != 200 {
			t.Errorf("got %d, want 200", code)
		}
		deadline := time.Now().Add(5 * time.Second)
		for p.quit.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if p.quit.Load() != 1 {
			t.Errorf("got quit hook called %d times, want 1", p.quit.Load())
		}
	})
}

func TestMergedMetrics(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "# TYPE app_jobs_total counter\napp_jobs_total 42\n")
	}))
	defer app.Close()
	store := stats.NewStore()
	store.Scope("cluster", "c").Counter("upstream_rq_total").Add(3)
	s, err := New(Options{MergedAddress: "127.0.0.1:0", Stats: store, AppMetricsURL: app.URL + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, body := get(t, "GET", "http://"+s.MergedAddr()+"/stats/prometheus")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("got invalid merged exposition: %v\n%s", err, body)
	}
	if fams["app_jobs_total"].GetMetric()[0].GetCounter().GetValue() != 42 || fams["envoy_cluster_upstream_rq_total"] == nil {
		t.Errorf("got families %v, want the app's and the proxy's", fams)
	}
	if code, _ := get(t, "GET", "http://"+s.MergedAddr()+"/healthz/ready"); code != 200 {
		t.Errorf("got /healthz/ready %d on 15020, want 200", code)
	}
	app.Close()
	if code, _ := get(t, "GET", "http://"+s.MergedAddr()+"/stats/prometheus"); code != 200 || store.CounterValue("agent.app_metrics_scrape_errors") != 1 {
		t.Errorf("app down: got %d and %d errors, want 200 with one counted error", code, store.CounterValue("agent.app_metrics_scrape_errors"))
	}
}

func TestAppProbes(t *testing.T) {
	var ready atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" && r.Header.Get("X-Probe") == "yes" && r.Host == "app.local":
			w.WriteHeader(200)
		case r.URL.Path == "/ready" && ready.Load():
			w.WriteHeader(204)
		default:
			w.WriteHeader(500)
		}
	}))
	defer app.Close()
	_, port, _ := net.SplitHostPort(app.Listener.Addr().String())
	probers := fmt.Sprintf(`{
		"/app-health/web/livez": {"httpGet": {"path": "/healthz", "port": %s, "scheme": "HTTP",
			"httpHeaders": [{"name": "X-Probe", "value": "yes"}, {"name": "Host", "value": "app.local"}]}, "timeoutSeconds": 2},
		"/app-health/web/readyz": {"httpGet": {"path": "ready", "port": "%s"}}
	}`, port, port)
	s, err := New(Options{MergedAddress: "127.0.0.1:0", AppProbers: probers})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.MergedAddr()
	steps := []struct {
		path string
		want int
	}{
		{"/app-health/web/livez", 200},
		{"/app-health/web/readyz", 500},
		{"/app-health/web/startupz", 404},
	}
	for _, st := range steps {
		if code, _ := get(t, "GET", base+st.path); code != st.want {
			t.Errorf("%s: got %d, want %d", st.path, code, st.want)
		}
	}
	ready.Store(true)
	if code, _ := get(t, "GET", base+"/app-health/web/readyz"); code != 204 {
		t.Errorf("readyz after the app is ready: got %d, want 204", code)
	}
	app.Close()
	if code, _ := get(t, "GET", base+"/app-health/web/livez"); code != 503 {
		t.Errorf("app down: got %d, want 503", code)
	}
	for _, bad := range []struct{ json, want string }{
		{`[`, "not a JSON object"},
		{`{"/x": {"httpGet": {"port": 80}}}`, "must start with /app-health/"},
		{`{"/app-health/a/livez": {"httpGet": {"port": "http"}}}`, "is not a port number"},
		{`{"/app-health/a/livez": {}}`, "one of httpGet, tcpSocket or grpc must be set"},
		{`{"/app-health/a/livez": {"grpc": {"port": "grpc"}}}`, `["/app-health/a/livez"].grpc.port: "grpc" is not a port number`},
		{`{"/app-health/a/livez": {"tcpSocket": {"port": "db"}}}`, "tcpSocket.port"},
	} {
		if _, err := New(Options{AppProbers: bad.json}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want error containing %q", bad.json, err, bad.want)
		}
	}
}

// A rewritten TCP probe is answered by dialling the app's port: 200 while
// it listens, 503 once it is gone (the proxy's inbound capture would
// accept the kubelet's connection whatever the app does).
func TestAppTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s, err := New(Options{MergedAddress: "127.0.0.1:0", AppProbers: `{"/app-health/db/livez": {"tcpSocket": {"port": ` + port + `}}}`})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://" + s.MergedAddr() + "/app-health/db/livez"
	if code, body := get(t, "GET", url); code != 200 {
		t.Errorf("app listening: got %d %s, want 200", code, body)
	}
	ln.Close()
	if code, _ := get(t, "GET", url); code != 503 {
		t.Errorf("app gone: got %d, want 503", code)
	}
}

func TestNewFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := New(Options{Address: "127.0.0.1:0", ReadyAddress: ln.Addr().String()}); err == nil || !strings.Contains(err.Error(), "(ready)") {
		t.Errorf("got %v, want a listen error naming the ready server", err)
	}
}

// checkGolden compares got with a golden file (rewritten with -update).
// The config dump and clusters goldens are also the fixtures of the
// `trellis proxy-config` tests.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update after checking):\n%s", golden, firstDiff(string(got), string(want)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n got  %s\n want %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(al), len(bl))
}
