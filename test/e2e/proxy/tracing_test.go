package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// startCollector runs the pinned OpenTelemetry Collector
// (scripts/otelcol.sh, $TRELLIS_OTELCOL) with the OTLP receiver on gRPC
// and HTTP and the file exporter, and returns the two receiver addresses
// and the file the spans land in.
func startCollector(t *testing.T) (grpcAddr, httpAddr, spans string) {
	t.Helper()
	bin := os.Getenv("TRELLIS_OTELCOL")
	if bin == "" {
		t.Skip("TRELLIS_OTELCOL is unset: run scripts/otelcol.sh (scripts/test.sh exports it) to build the pinned OpenTelemetry Collector")
	}
	dir := t.TempDir()
	grpcAddr, httpAddr = freePort(t), freePort(t)
	spans = filepath.Join(dir, "spans.jsonl")
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: %q}
      http: {endpoint: %q}
exporters:
  file: {path: %q, flush_interval: 100ms}
service:
  telemetry:
    logs: {level: warn}
    metrics: {level: none}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
`, grpcAddr, httpAddr, spans)
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("collector output:\n%s", out.String())
		}
	})
	eventually(t, "the collector's OTLP/HTTP receiver", func() error {
		resp, err := http.Post("http://"+httpAddr+"/v1/traces", "application/json", strings.NewReader("{}"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return grpcAddr, httpAddr, spans
}

// otlpSpan is one span as the collector's file exporter writes it (OTLP
// JSON: hex ids, kind as a number).
type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Attributes   []struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	} `json:"attributes"`
	service string
}

func (s otlpSpan) tag(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.StringValue
		}
	}
	return ""
}

// readSpans parses the collector's file: one export request per line.
func readSpans(path string) ([]otlpSpan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []otlpSpan
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var td struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []struct {
						Key   string `json:"key"`
						Value struct {
							StringValue string `json:"stringValue"`
						} `json:"value"`
					} `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &td); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		for _, rs := range td.ResourceSpans {
			svc := ""
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					svc = a.Value.StringValue
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					s.service = svc
					out = append(out, s)
				}
			}
		}
	}
	return out, sc.Err()
}

// tracingWorkloads: reviews (the app behind its sidecar, as in
// mtls_test.go: the rebound inbound listener sees connections sent to
// :15006, so a Sidecar declares that port) and the collector reached by
// the proxies as a mesh service on its two OTLP ports.
const tracingWorkloads = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: shop}
spec:
  address: 127.0.0.1
  ports: {http: {{INBOUND_PORT}}}
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: shop}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{APP_PORT}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel-collector, namespace: observability}
spec:
  hosts: [otel-collector.observability.svc.cluster.local]
  addresses: [240.240.9.2]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 4317, name: grpc-otlp, protocol: GRPC, targetPort: {{GRPC_PORT}}}
  - {number: 4318, name: http-otlp, protocol: HTTP, targetPort: {{HTTP_PORT}}}
  endpoints: [{address: 127.0.0.1}]
`

// tracingGateway exposes reviews through the ingress gateway.
const tracingGateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gateway]
  http:
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: reviews.shop.svc.cluster.local, port: {number: 80}}}]
`

// tracingMesh is the MeshConfig part trellisd reads, as in an Istio
// install's mesh config.
const tracingMesh = `{
  "defaultProviders": {"tracing": ["otel-grpc"]},
  "extensionProviders": [
    {"name": "otel-grpc", "opentelemetry": {"service": "otel-collector.observability.svc.cluster.local", "port": 4317}},
    {"name": "otel-http", "opentelemetry": {"service": "otel-collector.observability.svc.cluster.local", "port": 4318, "http": {"path": "/v1/traces"}}}
  ]
}`

const tracingTelemetry = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: {{PROVIDER}}}]
    randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: shop}}
      user: {header: {name: x-user, defaultValue: anonymous}}
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400 && request.method == 'GET'"}
`

// TestTracingThroughSidecars: a client calls reviews through front's
// sidecar and reviews' sidecar (real trellisd, two real trellis-proxy
// processes) with a W3C traceparent; each sidecar reports its span to a
// real OpenTelemetry Collector, first over OTLP/gRPC (MeshConfig's
// default provider), then over OTLP/HTTP (a Telemetry naming the other
// provider). The spans read back from the collector's file form one
// trace: the client's span -> front's CLIENT span -> reviews' SERVER
// span -> the app, which receives the server span as its parent, with
// Istio's tags. Then an ingress gateway in front of reviews: a request
// without context starts a trace at the gateway's span, the parent of
// reviews' span.
func TestTracingThroughSidecars(t *testing.T) {
	grpcAddr, httpAddr, spansFile := startCollector(t)
	dir := t.TempDir()
	app, seen := traceApp(t)
	inbound := freePort(t)
	writeConfig(t, dir, "workloads.yaml", tracingWorkloads, map[string]string{"INBOUND_PORT": port(inbound), "APP_PORT": port(app),
		"GRPC_PORT": port(grpcAddr), "HTTP_PORT": port(httpAddr)})
	writeConfig(t, dir, "telemetry.yaml", tracingTelemetry, map[string]string{"PROVIDER": "otel-grpc"})
	writeConfig(t, dir, "gateway.yaml", tracingGateway, nil)
	mc := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal([]byte(tracingMesh), mc); err != nil {
		t.Fatal(err)
	}
	td := startTrellisdWith(t, trellisd.Options{ConfigDir: dir, MeshConfig: mc})

	reviewsAdmin := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "reviews-1", "--namespace", "shop",
		"--labels", "app=reviews,version=v1", "--admin-address", reviewsAdmin, "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound), "--drain-duration", "1s")
	outbound, frontAdmin := freePort(t), freePort(t)
	front := startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "front-1", "--namespace", "shop",
		"--labels", "app=front,version=v2", "--admin-address", frontAdmin, "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)), "--drain-duration", "1s")

	const rootTrace, rootSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	call := func(n int) error {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/reviews/%d", outbound, n), nil)
		if n == 404 {
			req.URL.Path = "/missing"
		}
		req.Host = "reviews.shop.svc.cluster.local"
		req.Header.Set("traceparent", "00-"+rootTrace+"-"+rootSpan+"-01")
		req.Header.Set("x-user", "jesse")
		req.Header.Set("x-request-id", fmt.Sprintf("req-%d", n))
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 404, false: 200}[n == 404]; resp.StatusCode != want {
			return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, want, b)
		}
		return nil
	}
	eventually(t, "front -> reviews through both sidecars", func() error { return call(0) })

	// The Telemetry's access log filter: front's sidecar logs the GET
	// answered 404, not the ones answered 200.
	if err := call(404); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the 404 in front's access log", func() error {
		if !strings.Contains(front.out.String(), `"req-404"`) {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
	if out := front.out.String(); strings.Contains(out, `"req-0"`) {
		t.Errorf("front logged a 200 despite the filter response.code >= 400:\n%s", out)
	}

	for i, provider := range []string{"otel-grpc", "otel-http"} {
		n := 100 + i
		if provider == "otel-http" {
			writeConfig(t, dir, "telemetry.yaml", tracingTelemetry, map[string]string{"PROVIDER": provider})
			for _, admin := range []string{frontAdmin, reviewsAdmin} {
				eventually(t, "the OTLP/HTTP provider in the sidecars' config", func() error {
					resp, err := http.Get("http://" + admin + "/config_dump")
					if err != nil {
						return err
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if !strings.Contains(string(b), "/v1/traces") {
						return fmt.Errorf("no http_service yet")
					}
					return nil
				})
			}
		}
		if err := call(n); err != nil {
			t.Fatalf("%s: %v", provider, err)
		}
		rid := fmt.Sprintf("req-%d", n)
		var client, server otlpSpan
		eventually(t, provider+": both spans of "+rid+" at the collector", func() error {
			spans, err := readSpans(spansFile)
			if err != nil {
				return err
			}
			client, server = otlpSpan{}, otlpSpan{}
			for _, s := range spans {
				if s.tag("guid:x-request-id") != rid {
					continue
				}
				switch s.Kind {
				case 3:
					client = s
				case 2:
					server = s
				}
			}
			if client.SpanID == "" || server.SpanID == "" {
				return fmt.Errorf("got client %q server %q span ids", client.SpanID, server.SpanID)
			}
			return nil
		})
		// One trace, parent to child across every hop.
		if client.TraceID != rootTrace || server.TraceID != rootTrace {
			t.Errorf("%s: got trace ids %s, %s, want the caller's %s", provider, client.TraceID, server.TraceID, rootTrace)
		}
		if client.ParentSpanID != rootSpan {
			t.Errorf("%s: front's span parent %s, want the caller's span %s", provider, client.ParentSpanID, rootSpan)
		}
		if server.ParentSpanID != client.SpanID {
			t.Errorf("%s: reviews' span parent %s, want front's span %s", provider, server.ParentSpanID, client.SpanID)
		}
		if got, want := seen(rid), "00-"+rootTrace+"-"+server.SpanID+"-01"; got != want {
			t.Errorf("%s: the app got traceparent %s, want %s (reviews' span as parent)", provider, got, want)
		}
		if want := "reviews.shop.svc.cluster.local:80/*"; client.Name != want {
			t.Errorf("%s: front's span is named %q, want %q", provider, client.Name, want)
		}
		for _, c := range []struct {
			s    otlpSpan
			side string
			want map[string]string
		}{
			{client, "front", map[string]string{"http.method": "GET", "http.url": fmt.Sprintf("http://reviews.shop.svc.cluster.local/reviews/%d", n),
				"http.status_code": "200", "upstream_cluster": "outbound|80||reviews.shop.svc.cluster.local", "response_flags": "-",
				"node_id": "sidecar~127.0.0.2~front-1.shop~shop.svc.cluster.local", "istio.canonical_service": "front", "istio.canonical_revision": "v2",
				"istio.mesh_id": "cluster.local", "istio.namespace": "shop", "team": "shop", "user": "jesse"}},
			{server, "reviews", map[string]string{"http.method": "GET", "http.status_code": "200", "upstream_cluster": "inbound|15006||",
				"response_flags": "-", "node_id": "sidecar~127.0.0.1~reviews-1.shop~shop.svc.cluster.local", "istio.canonical_service": "reviews",
				"istio.namespace": "shop", "istio.mesh_id": "cluster.local", "user": "jesse"}},
		} {
			for k, w := range c.want {
				if got := c.s.tag(k); got != w {
					t.Errorf("%s: %s's span tag %s=%q, want %q", provider, c.side, k, got, w)
				}
			}
		}
		if client.service != "front.shop" || server.service != "reviews.shop" {
			t.Errorf("%s: got service.name %q and %q, want front.shop and reviews.shop", provider, client.service, server.service)
		}
	}

	// Through the ingress gateway: its span is the parent of reviews'
	// server span, and a request without trace context starts a trace.
	gw := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.3",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+gw, "--drain-duration", "1s")
	viaGateway := func(rid string) error {
		req, _ := http.NewRequest("GET", "http://"+gw+"/reviews/gw", nil)
		req.Host = "shop.example.com"
		req.Header.Set("x-request-id", rid)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	eventually(t, "the gateway route to reviews", func() error { return viaGateway("gw-warm") })
	if err := viaGateway("gw-1"); err != nil {
		t.Fatal(err)
	}
	var gwSpan, server otlpSpan
	eventually(t, "the gateway's and reviews' spans of gw-1", func() error {
		spans, err := readSpans(spansFile)
		if err != nil {
			return err
		}
		gwSpan, server = otlpSpan{}, otlpSpan{}
		for _, s := range spans {
			if s.tag("guid:x-request-id") != "gw-1" {
				continue
			}
			if strings.HasPrefix(s.tag("node_id"), "router~") {
				gwSpan = s
			} else {
				server = s
			}
		}
		if gwSpan.SpanID == "" || server.SpanID == "" {
			return fmt.Errorf("got gateway %q reviews %q span ids", gwSpan.SpanID, server.SpanID)
		}
		return nil
	})
	if gwSpan.ParentSpanID != "" || gwSpan.TraceID != server.TraceID || server.ParentSpanID != gwSpan.SpanID {
		t.Errorf("gateway span %s/%s (parent %q), reviews span %s parent %s: want one trace rooted at the gateway",
			gwSpan.TraceID, gwSpan.SpanID, gwSpan.ParentSpanID, server.TraceID, server.ParentSpanID)
	}
	if got, want := gwSpan.Name, "reviews.shop.svc.cluster.local:80/reviews*"; got != want {
		t.Errorf("gateway span name %q, want %q (the VirtualService route's decorator)", got, want)
	}
	if got := seen("gw-1"); got != "00-"+server.TraceID+"-"+server.SpanID+"-01" {
		t.Errorf("the app got traceparent %s through the gateway, want reviews' span", got)
	}
}

// traceApp is the application behind reviews' sidecar: it records the
// traceparent of each request by x-request-id.
func traceApp(t *testing.T) (addr string, seen func(requestID string) string) {
	var mu sync.Mutex
	got := map[string]string{}
	srv := backendServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("x-request-id")] = r.Header.Get("traceparent")
		mu.Unlock()
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "reviews")
	}))
	return srv, func(id string) string {
		mu.Lock()
		defer mu.Unlock()
		return got[id]
	}
}

// startTrellisdWith runs the control plane in-process with o (its
// XDSAddress, Debounce, Logf and Ready set here).
func startTrellisdWith(t *testing.T, o trellisd.Options) *trellisd.Server {
	t.Helper()
	ready := make(chan *trellisd.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o.XDSAddress, o.Debounce, o.Logf = "127.0.0.1:0", 10*time.Millisecond, func(string, ...any) {}
	o.Ready = func(s *trellisd.Server) { ready <- s }
	go func() { done <- trellisd.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case s := <-ready:
		return s
	case err := <-done:
		t.Fatalf("trellisd: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("trellisd not ready")
	}
	return nil
}
