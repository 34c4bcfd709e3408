package proxy

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// staticBootstrap is an Envoy bootstrap with one listener routing every
// host to one STATIC cluster, and no node: Envoy accepts it, and so must
// trellis-proxy.
const staticBootstrap = `admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 0}
static_resources:
  listeners:
  - name: front
    address:
      socket_address: {address: 127.0.0.1, port_value: {{LISTEN_PORT}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: front
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: backend}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{BACKEND_PORT}}}
`

// TestStaticBootstrapWithoutNode: trellis-proxy -c with a static-only
// bootstrap and no node serves traffic; with ADS and no node it exits with
// the node.id error.
func TestStaticBootstrapWithoutNode(t *testing.T) {
	backend := versionServer(t, "backend")
	listen := freePort(t)
	dir := t.TempDir()
	writeConfig(t, dir, "static.yaml", staticBootstrap, map[string]string{"LISTEN_PORT": port(listen), "BACKEND_PORT": port(backend)})
	startProxy(t, "-c", filepath.Join(dir, "static.yaml"))
	waitHTTP(t, listen, "anything.example")
	resp, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "backend" {
		t.Errorf("got body %q, want %q", body, "backend")
	}

	ads := `dynamic_resources:
  ads_config: {api_type: DELTA_GRPC, grpc_services: [{envoy_grpc: {cluster_name: backend}}]}
  lds_config: {ads: {}}
  cds_config: {ads: {}}
`
	writeConfig(t, dir, "ads.yaml", staticBootstrap+ads, map[string]string{"LISTEN_PORT": port(freePort(t)), "BACKEND_PORT": port(backend)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, proxyBin, "-c", filepath.Join(dir, "ads.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "node.id: must be set") {
		t.Errorf("ADS without node: got exit %v, output %q, want a failure naming node.id", err, out)
	}
}
