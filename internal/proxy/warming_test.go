package proxy

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routrv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rdsListener is an LDS listener on 127.0.0.1:0 whose HCM uses RDS route.
// A non-empty logPath adds a file access log of "%RESPONSE_CODE%
// %RESPONSE_FLAGS%" lines.
func rdsListener(t *testing.T, name, route string, logPath ...string) map[string]*anypb.Any {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: route,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routrv3.Router{})}}},
	}
	for _, path := range logPath {
		fal := &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}},
		}}}
		h.AccessLog = append(h.AccessLog, &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(t, fal)}})
	}
	l := &listenerv3.Listener{
		Name:    name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)},
		}}}},
	}
	return map[string]*anypb.Any{name: mustAny(t, l)}
}

// directRoutes is a set of route configurations each answering 200 with
// its own name as the body.
func directRoutes(t *testing.T, names ...string) map[string]*anypb.Any {
	out := map[string]*anypb.Any{}
	for _, n := range names {
		rc := &routev3.RouteConfiguration{Name: n, VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: n}}}},
			}},
		}}}
		out[n] = mustAny(t, rc)
	}
	return out
}

func warmGet(t *testing.T, c *http.Client, addr string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("get %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWarmingUpdateKeepsOldVersion(t *testing.T) {
	r := startProxy(t, nil, nil, func(p *Proxy) { p.warmTimeout = time.Hour })
	p := r.p
	if err := p.Apply(resourcev3.RouteType, directRoutes(t, "r1")); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r1")); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "l")
	c := client()
	if code, body := warmGet(t, c, addr); code != 200 || body != "r1" {
		t.Fatalf("before update: got %d %q, want 200 \"r1\"", code, body)
	}
	// The update references r2, which has not arrived: the old version
	// keeps serving instead of answering 404 NR.
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r2")); err != nil {
		t.Fatal(err)
	}
	if got := len(p.WarmingListeners()); got != 1 {
		t.Fatalf("warming listeners: got %d, want 1", got)
	}
	// The config dump shows the r1 version active and r2 warming.
	active, warming := p.warmingState("l")
	if !warming || active == nil || active.(*listenerv3.Listener).GetName() != "l" {
		t.Fatalf("warmingState: got (%v, %v), want the active r1 version and warming", active, warming)
	}
	for i := 0; i < 3; i++ {
		if code, body := warmGet(t, c, addr); code != 200 || body != "r1" {
			t.Fatalf("during warming: got %d %q, want 200 \"r1\"", code, body)
		}
	}
	if err := p.Apply(resourcev3.RouteType, directRoutes(t, "r1", "r2")); err != nil {
		t.Fatal(err)
	}
	if got := len(p.WarmingListeners()); got != 0 {
		t.Fatalf("warming listeners after RDS: got %d, want 0", got)
	}
	if _, warming := p.warmingState("l"); warming {
		t.Fatal("warmingState after RDS: got warming, want active")
	}
	// New connections get the new version (open ones are answered by the
	// old one once more, with connection: close; see retire_test.go).
	if code, body := warmGet(t, client(), addr); code != 200 || body != "r2" {
		t.Fatalf("after RDS: got %d %q, want 200 \"r2\"", code, body)
	}
}

func TestWarmingNewListenerTimesOut(t *testing.T) {
	r := startProxy(t, nil, nil, func(p *Proxy) { p.warmTimeout = 50 * time.Millisecond })
	p := r.p
	logPath := filepath.Join(t.TempDir(), "access.log")
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "missing", logPath)); err != nil {
		t.Fatal(err)
	}
	// The timer may already have fired; if not, the listener must be
	// warming and unbound.
	if len(p.WarmingListeners()) == 1 && p.Listeners.BoundAddr("l") != "" {
		t.Fatal("warming listener is bound")
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Listeners.BoundAddr("l") == "" {
		if time.Now().After(deadline) {
			t.Fatal("listener never activated after the warming timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(p.WarmingListeners()); got != 0 {
		t.Fatalf("warming listeners: got %d, want 0", got)
	}
	if code, _ := warmGet(t, client(), r.addr(t, "l")); code != 404 {
		t.Fatalf("got %d, want 404", code)
	}
	// The access log line is written after the response; wait for it.
	var line string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if line = strings.TrimSpace(string(b)); line != "" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if line != "404 NR" {
		t.Fatalf("access log: got %q, want \"404 NR\"", line)
	}
}

func TestWarmingNewListenerRouteArrives(t *testing.T) {
	r := startProxy(t, nil, nil, func(p *Proxy) { p.warmTimeout = time.Hour })
	p := r.p
	if err := p.Apply(resourcev3.ListenerType, rdsListener(t, "l", "r")); err != nil {
		t.Fatal(err)
	}
	if a := p.Listeners.BoundAddr("l"); a != "" {
		t.Fatalf("warming listener bound at %s, want not bound", a)
	}
	if got := len(p.WarmingListeners()); got != 1 {
		t.Fatalf("warming listeners: got %d, want 1", got)
	}
	if active, warming := p.warmingState("l"); !warming || active != nil {
		t.Fatalf("warmingState: got (%v, %v), want (nil, true)", active, warming)
	}
	if !p.initWarming.Load() {
		t.Fatal("initial warming not reported: ready would be true too early")
	}
	if err := p.Apply(resourcev3.RouteType, directRoutes(t, "r")); err != nil {
		t.Fatal(err)
	}
	if p.initWarming.Load() {
		t.Fatal("initial warming still reported after the route arrived")
	}
	if code, body := warmGet(t, client(), r.addr(t, "l")); code != 200 || body != "r" {
		t.Fatalf("got %d %q, want 200 \"r\"", code, body)
	}
}
