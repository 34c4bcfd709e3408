package proxy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// lockedRand is a seeded, goroutine-safe random source for tests.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (l *lockedRand) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint64()
}

// cluster describes a static test cluster.
type testCluster struct {
	Name    string
	Addrs   []string
	HTTP2   bool
	Extra   string // extra YAML lines (indented 4 spaces)
	Timeout string
}

// testListener is a static listener with one HCM or TCP chain.
type testListener struct {
	Name      string
	Direction string
	Host      string // listening address; empty means 127.0.0.1
	HCM       string // YAML of the HCM typed_config body after @type (indented 10 spaces)
	TCP       string // YAML of the tcp_proxy body (indented 10 spaces)
}

var bootstrapTmpl = template.Must(template.New("bs").Funcs(template.FuncMap{
	"host": func(a string) string { h, _, _ := net.SplitHostPort(a); return h },
	"port": func(a string) string { _, p, _ := net.SplitHostPort(a); return p },
}).Parse(`node:
  id: sidecar~127.0.0.1~test-pod.default~default.svc.cluster.local
  cluster: test.default
  metadata:
    NAMESPACE: default
    WORKLOAD_NAME: test
    LABELS: {app: test, version: v1}
static_resources:
  listeners:
{{- range .Listeners}}
  - name: {{.Name}}
    traffic_direction: {{if .Direction}}{{.Direction}}{{else}}OUTBOUND{{end}}
    address:
      socket_address: {address: {{if .Host}}{{.Host}}{{else}}127.0.0.1{{end}}, port_value: 0}
    filter_chains:
    - filters:
{{- if .HCM}}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
{{.HCM}}
{{- else}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
{{.TCP}}
{{- end}}
{{- end}}
  clusters:
{{- range .Clusters}}
  - name: {{.Name}}
    type: STATIC
    connect_timeout: {{if .Timeout}}{{.Timeout}}{{else}}1s{{end}}
{{- if .HTTP2}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
{{- end}}
{{.Extra}}
    load_assignment:
      cluster_name: {{.Name}}
      endpoints:
      - lb_endpoints:
{{- range .Addrs}}
        - endpoint:
            address:
              socket_address: {address: {{host .}}, port_value: {{port .}}}
{{- end}}
{{- end}}
`))

// http_filters entries for hcmFilters.
const (
	faultFilter = `          - name: envoy.filters.http.fault
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
`
	corsFilter = `          - name: envoy.filters.http.cors
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
`
	routerFilter = `          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`
)

// hcm renders an HCM body with Istio's filters (fault, cors, router)
// routing with the given virtual hosts YAML (indented as under
// route_config.virtual_hosts).
func hcm(vhosts string, extra string) string {
	return hcmFilters(faultFilter+corsFilter+routerFilter, vhosts, extra)
}

// hcmFilters is hcm with the given http_filters entries.
func hcmFilters(filters, vhosts, extra string) string {
	return `          stat_prefix: test
          codec_type: AUTO
          upgrade_configs: [{upgrade_type: websocket}]
` + extra + `          http_filters:
` + filters + `          route_config:
            name: test
            virtual_hosts:
` + vhosts
}

// running is an in-process proxy under test.
type running struct {
	p      *Proxy
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
	// wait blocks until Serve has returned and gives its error.
	wait    func() error
	stopped chan struct{}
	err     error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProxy runs a proxy from a rendered bootstrap until the test ends.
func startProxy(t testing.TB, listeners []testListener, clusters []testCluster, tweak func(*Proxy)) *running {
	t.Helper()
	// A short shutdown drain: the tests end their proxies idle.
	return startProxyDrain(t, listeners, clusters, tweak, 50*time.Millisecond)
}

// startProxyDrain is startProxy with the shutdown drain duration given.
func startProxyDrain(t testing.TB, listeners []testListener, clusters []testCluster, tweak func(*Proxy), drain time.Duration) *running {
	t.Helper()
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, map[string]any{"Listeners": listeners, "Clusters": clusters}); err != nil {
		t.Fatal(err)
	}
	bs, err := bootstrap.Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, buf.String())
	}
	logs := &syncBuffer{}
	p, err := New(bs, Options{Log: logs, DrainDuration: time.Second})
	if err != nil {
		t.Fatalf("new proxy: %v\n%s", err, buf.String())
	}
	if tweak != nil {
		tweak(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1), log: logs}
	ready := make(chan struct{})
	go func() {
		r.done <- p.Serve(ctx, Options{DrainDuration: drain, Ready: func(*Proxy) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not ready")
	}
	var once sync.Once
	r.stopped = make(chan struct{})
	r.wait = func() error {
		once.Do(func() { r.err = <-r.done; close(r.stopped) })
		<-r.stopped
		return r.err
	}
	t.Cleanup(func() {
		cancel()
		r.wait()
	})
	return r
}

// addr returns a listener's bound address.
func (r *running) addr(t testing.TB, name string) string {
	t.Helper()
	a := r.p.Listeners.BoundAddr(name)
	if a == "" {
		t.Fatalf("listener %q is not bound", name)
	}
	return a
}

// client returns an HTTP/1.1 client that keeps connections alive.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}, Timeout: 10 * time.Second}
}

// backend starts an HTTP/1.1 server on 127.0.0.1:0.
func backend(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// nameHandler answers with its name.
func nameHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-backend", name)
		fmt.Fprint(w, name)
	})
}

// vhost renders one virtual host with domains ["*"] and the routes YAML.
func vhost(routes string) string {
	return `            - name: all
              domains: ["*"]
              routes:
` + routes
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func yamlToProto(y []byte, m proto.Message) error {
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(js, m)
}
