package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// tcpEcho copies each connection back to itself until EOF.
func tcpEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// promScrape fetches and parses a proxy's /stats/prometheus.
func promScrape(addr string) (map[string]*dto.MetricFamily, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/stats/prometheus")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// promValue returns the value of the one series of name whose labels
// include want.
func promValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, error) {
	var found []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		ok := true
		for _, l := range m.GetLabel() {
			if v, in := want[l.GetName()]; in && v != l.GetValue() {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%s%v: got %d series, want 1 (all: %v)", name, want, len(found), fams[name].GetMetric())
	}
	if c := found[0].GetCounter(); c != nil {
		return c.GetValue(), nil
	}
	return found[0].GetGauge().GetValue(), nil
}

// wantProm checks every name=value of want in one scrape of addr.
func wantProm(addr string, labels map[string]string, want map[string]float64) error {
	fams, err := promScrape(addr)
	if err != nil {
		return err
	}
	for name, w := range want {
		got, err := promValue(fams, name, labels)
		if err != nil {
			return err
		}
		if got != w {
			return fmt.Errorf("%s%v: got %v, want %v", name, labels, got, w)
		}
	}
	return nil
}

// serverSidecarBootstrap is what trellisd sends a plaintext TCP workload's
// sidecar for its inbound port (see internal/xds/translate inbound.go): an
// INBOUND listener whose tcp_proxy goes to inbound|PORT|| with the
// service in the cluster's istio metadata. The listener sits on its own
// loopback port, where interception would redirect to 15006.
const serverSidecarBootstrap = `node:
  id: sidecar~127.0.0.1~redis-cache-0.default~default.svc.cluster.local
  cluster: redis-cache.default
  metadata:
    NAMESPACE: default
    WORKLOAD_NAME: redis-cache
    CLUSTER_ID: Kubernetes
    LABELS: {app: redis-cache, version: v1}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: {{ADMIN_PORT}}}
static_resources:
  listeners:
  - name: virtualInbound
    traffic_direction: INBOUND
    address:
      socket_address: {address: 127.0.0.1, port_value: {{INBOUND_PORT}}}
    filter_chains:
    - name: inbound|6379||
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound|6379||
          cluster: inbound|6379||
  clusters:
  - name: inbound|6379||
    type: STATIC
    connect_timeout: 10s
    metadata:
      filter_metadata:
        istio:
          services:
          - {host: redis-cache-service.default.svc.cluster.local, name: redis-cache-service, namespace: default}
    load_assignment:
      cluster_name: inbound|6379||
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{APP_PORT}}}
`

// TestTCPTelemetryThroughSidecars is the burst scenario's redis path: a
// client's sidecar (configured by trellisd from the scenario's
// redis-virtualservice.yaml and a ServiceEntry) proxies plain TCP to the
// redis workload's sidecar, which proxies it to a TCP echo server. Both
// real trellis-proxy processes' /stats/prometheus show
// istio_tcp_connections_opened_total, bytes while the long-lived connection
// is open (the periodic flush) and, after the close,
// istio_tcp_connections_closed_total and byte totals equal to what was
// sent, reported by "source" at the client and "destination" at the
// server, with destination_service from the clusters' metadata. As in
// Istio without mutual TLS no peer metadata crosses a TCP connection, so
// the server side reports the source as unknown.
func TestTCPTelemetryThroughSidecars(t *testing.T) {
	app := tcpEcho(t)
	inbound, serverAdmin, serverProm := freePort(t), freePort(t), freePort(t)
	bdir := t.TempDir()
	bs := strings.NewReplacer("{{ADMIN_PORT}}", port(serverAdmin), "{{INBOUND_PORT}}", port(inbound), "{{APP_PORT}}", port(app)).Replace(serverSidecarBootstrap)
	if err := os.WriteFile(filepath.Join(bdir, "bootstrap.yaml"), []byte(bs), 0o644); err != nil {
		t.Fatal(err)
	}
	startProxy(t, "-c", filepath.Join(bdir, "bootstrap.yaml"), "--prometheus-address", serverProm, "--drain-duration", "1s")

	dir := t.TempDir()
	writeConfig(t, dir, "redis.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: redis-cache-service, namespace: default}
spec:
  hosts: [redis-cache-service.default.svc.cluster.local]
  addresses: [240.240.2.3]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  workloadSelector: {labels: {app: redis-cache}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: redis-cache, namespace: default}
spec:
  address: 127.0.0.1
  ports: {tcp-redis: `+port(inbound)+`}
  labels: {app: redis-cache, version: v1}
`, nil)
	writeConfig(t, dir, "redis-virtualservice.yaml", scenario(t, "burst/redis-virtualservice.yaml"), nil)
	td := startTrellisd(t, dir, "")
	redisLocal, clientAdmin, clientProm := freePort(t), freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "frontend-7c9d", "--namespace", "default",
		"--workload-name", "frontend", "--labels", "app=frontend,version=v1", "--admin-address", clientAdmin,
		"--ready-address", "", "--prometheus-address", clientProm, "--merged-address", "",
		"--rebind", "240.240.2.3:6379="+redisLocal+",0.0.0.0:15001="+freePort(t)+",0.0.0.0:15006="+freePort(t),
		"--drain-duration", "1s")

	var c net.Conn
	eventually(t, "the client sidecar's redis listener", func() error {
		var err error
		c, err = net.DialTimeout("tcp", redisLocal, time.Second)
		return err
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	roundTrip := func(n int) {
		t.Helper()
		msg := bytes.Repeat([]byte("+PONG\r\n"), n/7)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatalf("echo through both sidecars: %v", err)
		}
	}
	roundTrip(7000)

	const svc = "redis-cache-service.default.svc.cluster.local"
	sides := []struct {
		name, prom string
		labels     map[string]string
	}{
		{"client sidecar", clientProm, map[string]string{"reporter": "source", "request_protocol": "tcp", "response_flags": "-",
			"source_workload": "frontend", "source_workload_namespace": "default", "source_app": "frontend",
			"destination_service": svc, "destination_service_name": "redis-cache-service", "destination_service_namespace": "default",
			"destination_app": "redis-cache", "destination_version": "v1", "connection_security_policy": "unknown"}},
		{"server sidecar", serverProm, map[string]string{"reporter": "destination", "request_protocol": "tcp", "response_flags": "-",
			"source_workload": "unknown", "source_principal": "unknown", "source_canonical_revision": "latest",
			"destination_workload": "redis-cache", "destination_workload_namespace": "default", "destination_app": "redis-cache",
			"destination_cluster": "Kubernetes", "destination_service": svc, "connection_security_policy": "none"}},
	}
	// The connection stays open: its bytes show after the next periodic
	// flush (5 s), its close does not show yet.
	for _, s := range sides {
		eventually(t, s.name+" while the connection is open", func() error {
			return wantProm(s.prom, s.labels, map[string]float64{
				"istio_tcp_connections_opened_total": 1,
				"istio_tcp_received_bytes_total":     7000,
				"istio_tcp_sent_bytes_total":         7000,
			})
		})
		if err := wantProm(s.prom, s.labels, map[string]float64{"istio_tcp_connections_closed_total": 0}); err != nil && !strings.Contains(err.Error(), "got 0 series") {
			t.Errorf("%s: %v", s.name, err)
		}
	}

	roundTrip(700)
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("got %q %v, want EOF after the half-close", rest, err)
	}
	c.Close()
	for _, s := range sides {
		eventually(t, s.name+" after the close", func() error {
			return wantProm(s.prom, s.labels, map[string]float64{
				"istio_tcp_connections_opened_total": 1,
				"istio_tcp_connections_closed_total": 1,
				"istio_tcp_received_bytes_total":     7700,
				"istio_tcp_sent_bytes_total":         7700,
			})
		})
	}
	for _, s := range sides {
		if resp, err := http.Get("http://" + s.prom + "/stats/prometheus"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "istio_tcp_sent_bytes_total{") {
					t.Logf("%s: %s", s.name, l)
				}
			}
		}
	}
	// Envoy's own stats on the same endpoints.
	if err := wantProm(clientProm, map[string]string{"listener_address": "240.240.2.3_6379"}, map[string]float64{
		"envoy_listener_downstream_cx_total": 1, "envoy_listener_downstream_cx_destroy": 1, "envoy_listener_downstream_cx_active": 0}); err != nil {
		t.Error(err)
	}
	if err := wantProm(serverProm, map[string]string{"tcp_prefix": "inbound|6379||"}, map[string]float64{
		"envoy_tcp_downstream_cx_total": 1, "envoy_tcp_downstream_cx_rx_bytes_total": 7700, "envoy_tcp_downstream_cx_tx_bytes_total": 7700}); err != nil {
		t.Error(err)
	}
	// /stats in Envoy's text format names the same counters.
	resp, err := http.Get("http://" + serverAdmin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{"listener.127.0.0.1_" + port(inbound) + ".downstream_cx_total: 1\n", "tcp.inbound|6379||.downstream_cx_rx_bytes_total: 7700\n"} {
		if !bytes.Contains(text, []byte(line)) {
			t.Errorf("server sidecar /stats lacks %q", line)
		}
	}
}

// hcmHopBootstrap is one HTTP hop: a connection manager routing everything
// to one HTTP/2 cluster, as trellisd configures a gRPC port.
const hcmHopBootstrap = `node:
  id: sidecar~127.0.0.1~{{WORKLOAD}}-0.default~default.svc.cluster.local
  cluster: {{WORKLOAD}}.default
  metadata:
    NAMESPACE: default
    WORKLOAD_NAME: {{WORKLOAD}}
    LABELS: {app: {{WORKLOAD}}, version: v1}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: {{ADMIN_PORT}}}
static_resources:
  listeners:
  - name: {{DIRECTION}}
    traffic_direction: {{DIRECTION}}
    address:
      socket_address: {address: 127.0.0.1, port_value: {{LISTEN_PORT}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{PREFIX}}
          codec_type: AUTO
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: grpc
            virtual_hosts:
            - name: grpc
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: {{CLUSTER}}, timeout: 0s}
  clusters:
  - name: {{CLUSTER}}
    type: STATIC
    connect_timeout: 10s
    metadata:
      filter_metadata:
        istio:
          services:
          - {host: grpc-echo.default.svc.cluster.local, name: grpc-echo, namespace: default}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: {{CLUSTER}}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{UPSTREAM_PORT}}}
`

// startHCMHop runs one HTTP hop as a trellis-proxy process and returns its
// /stats/prometheus address.
func startHCMHop(t *testing.T, listen, upstream, direction, workload, prefix, cluster string) string {
	t.Helper()
	admin, prom := freePort(t), freePort(t)
	bs := strings.NewReplacer("{{WORKLOAD}}", workload, "{{ADMIN_PORT}}", port(admin), "{{DIRECTION}}", direction,
		"{{LISTEN_PORT}}", port(listen), "{{PREFIX}}", prefix, "{{CLUSTER}}", cluster, "{{UPSTREAM_PORT}}", port(upstream)).Replace(hcmHopBootstrap)
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(bs), 0o644); err != nil {
		t.Fatal(err)
	}
	startProxy(t, "-c", path, "--prometheus-address", prom, "--drain-duration", "1s")
	eventually(t, workload+" listening", func() error {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return prom
}

// TestGRPCMessageTelemetryTwoHops runs gRPC unary and streaming calls
// through a client and a server trellis-proxy process to a gRPC server:
// both proxies' istio_request_messages_total and
// istio_response_messages_total equal the messages sent each way, and
// Envoy's http.PREFIX.downstream_rq_* and listener.ADDR.* count the calls.
func TestGRPCMessageTelemetryTwoHops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	go gs.Serve(ln)
	defer gs.Stop()
	in, out := freePort(t), freePort(t)
	serverProm := startHCMHop(t, in, ln.Addr().String(), "INBOUND", "grpc-echo", "inbound_0.0.0.0_7070", "inbound|7070||")
	clientProm := startHCMHop(t, out, in, "OUTBOUND", "grpc-client", "outbound_0.0.0.0_7070", "outbound|7070||grpc-echo.default.svc.cluster.local")
	cc, err := grpc.NewClient(out, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	sides := []struct {
		name, prom, prefix string
		labels             map[string]string
	}{
		{"client proxy", clientProm, "outbound_0.0.0.0_7070", map[string]string{"reporter": "source", "source_workload": "grpc-client",
			"destination_service": "grpc-echo.default.svc.cluster.local", "request_protocol": "grpc", "response_code": "200", "grpc_response_status": "0"}},
		{"server proxy", serverProm, "inbound_0.0.0.0_7070", map[string]string{"reporter": "destination", "destination_workload": "grpc-echo",
			"destination_service": "grpc-echo.default.svc.cluster.local", "request_protocol": "grpc", "response_code": "200", "grpc_response_status": "0"}},
	}
	check := func(what string, calls, reqs, resps float64) {
		t.Helper()
		for _, s := range sides {
			eventually(t, what+" at the "+s.name, func() error {
				if err := wantProm(s.prom, s.labels, map[string]float64{
					"istio_requests_total":          calls,
					"istio_request_messages_total":  reqs,
					"istio_response_messages_total": resps,
				}); err != nil {
					return err
				}
				return wantProm(s.prom, map[string]string{"http_conn_manager_prefix": s.prefix}, map[string]float64{
					"envoy_http_downstream_rq_total":       calls,
					"envoy_http_downstream_rq_completed":   calls,
					"envoy_http_downstream_rq_http2_total": calls,
					"envoy_http_downstream_rq_active":      0,
				})
			})
		}
	}

	if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 100)}}); err != nil {
		t.Fatalf("unary: %v", err)
	}
	check("one unary call", 1, 1, 1)

	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i * 3000)}},
			Payload: &testpb.Payload{Body: make([]byte, i*2000)}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || len(resp.GetPayload().GetBody()) != i*3000 {
			t.Fatalf("stream message %d: got %d bytes, %v", i, len(resp.GetPayload().GetBody()), err)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v, want EOF", err)
	}
	check("a stream of 10 requests and 10 responses", 2, 11, 11)

	ss, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ss.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	check("a server stream of 3 responses", 3, 12, 14)
	// The readiness probe's connection and the gRPC client's one.
	if err := wantProm(clientProm, map[string]string{"listener_address": "127.0.0.1_" + port(out)}, map[string]float64{"envoy_listener_downstream_cx_total": 2}); err != nil {
		t.Error(err)
	}
}
