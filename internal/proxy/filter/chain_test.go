package filter

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"
)

// fromYAML decodes a YAML rendering of m's proto.
func fromYAML(t *testing.T, y string, m proto.Message) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatal(err)
	}
}

func chainOf(t *testing.T, y string) (Chain, error) {
	t.Helper()
	var h hcmv3.HttpConnectionManager
	fromYAML(t, y, &h)
	return CompileChain(h.GetHttpFilters(), "http_filters")
}

const (
	faultYAML  = `{name: envoy.filters.http.fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}`
	corsYAML   = `{name: envoy.filters.http.cors, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}}`
	routerYAML = `{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}`
)

func TestCompileChain(t *testing.T) {
	tests := []struct {
		name      string
		filters   string
		wantNames []string
		wantErr   string
	}{
		{name: "istio's order", filters: faultYAML + "," + corsYAML + "," + routerYAML, wantNames: []string{"envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"}},
		{name: "config order kept", filters: corsYAML + "," + faultYAML + "," + routerYAML, wantNames: []string{"envoy.filters.http.cors", "envoy.filters.http.fault", "envoy.filters.http.router"}},
		{name: "empty list is the router", filters: "", wantNames: []string{"envoy.filters.http.router"}},
		{name: "matched by type URL, the name is the user's", filters: `{name: my-fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}},` + routerYAML, wantNames: []string{"my-fault", "envoy.filters.http.router"}},
		{name: "well-known name without typed_config", filters: `{name: envoy.filters.http.router}`, wantNames: []string{"envoy.filters.http.router"}},
		{name: "optional unknown type is skipped", filters: `{name: istio.stats, is_optional: true, typed_config: {"@type": type.googleapis.com/google.protobuf.Empty}},` + routerYAML, wantNames: []string{"envoy.filters.http.router"}},
		{name: "unknown type is named", filters: `{name: istio.stats, typed_config: {"@type": type.googleapis.com/google.protobuf.Empty}},` + routerYAML, wantErr: `http_filters[0].typed_config: filter "istio.stats" of type type.googleapis.com/google.protobuf.Empty is not supported by trellis-proxy (mark it is_optional to skip it)`},
		{name: "unknown name is named", filters: `{name: envoy.filters.http.lua},` + routerYAML, wantErr: `http_filters[0].name: filter "envoy.filters.http.lua" is not supported`},
		{name: "discovery needs is_optional", filters: `{name: ext, config_discovery: {type_urls: [x]}},` + routerYAML, wantErr: `http_filters[0].config_discovery: filter "ext"`},
		{name: "disabled", filters: `{name: envoy.filters.http.fault, disabled: true},` + routerYAML, wantErr: "http_filters[0].disabled"},
		{name: "router not last", filters: routerYAML + "," + faultYAML, wantErr: `http_filters[1]: "envoy.filters.http.fault" follows the terminal filter "envoy.filters.http.router"`},
		{name: "no router", filters: faultYAML, wantErr: "http_filters: the last filter must be envoy.filters.http.router"},
		{name: "duplicate name", filters: faultYAML + "," + faultYAML + "," + routerYAML, wantErr: `http_filters[1].name: "envoy.filters.http.fault" is used by two filters`},
		{name: "bad fault config", filters: `{name: f, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 700}}},` + routerYAML, wantErr: "http_filters[0].typed_config.abort.http_status: 700"},
		{name: "router option that changes behaviour", filters: `{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}}`, wantErr: "http_filters[0].typed_config.suppress_envoy_headers: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := chainOf(t, "{http_filters: ["+tt.filters+"]}")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range c {
				names = append(names, l.Name)
			}
			if strings.Join(names, " ") != strings.Join(tt.wantNames, " ") {
				t.Errorf("got chain %v, want %v", names, tt.wantNames)
			}
		})
	}
}

func routeConfigs(t *testing.T, y string) (RouteConfigs, error) {
	t.Helper()
	var r routev3.Route
	fromYAML(t, y, &r)
	return CompileRouteConfigs(r.GetTypedPerFilterConfig(), "route")
}

func TestCompileRouteConfigsErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{name: "unknown type", yaml: `{typed_per_filter_config: {ext: {"@type": type.googleapis.com/google.protobuf.Empty}}}`,
			want: `route.typed_per_filter_config["ext"]: filter "ext": per-route config of type type.googleapis.com/google.protobuf.Empty is not supported`},
		{name: "bad config names the key", yaml: `{typed_per_filter_config: {f: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 99}}}}`,
			want: `route.typed_per_filter_config["f"].abort.http_status: 99`},
		{name: "disabled", yaml: `{typed_per_filter_config: {f: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}`,
			want: `route.typed_per_filter_config["f"].disabled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := routeConfigs(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	rc, err := routeConfigs(t, `{typed_per_filter_config: {ext: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true, config: {"@type": type.googleapis.com/google.protobuf.Empty}}}}`)
	if err != nil || len(rc) != 0 {
		t.Errorf("optional unknown per-route config: got %v %v, want it skipped", rc, err)
	}
}

func TestRouteConfigsMostSpecificWins(t *testing.T) {
	chain, err := chainOf(t, "{http_filters: ["+faultYAML+`, {name: my-cors, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}},`+routerYAML+"]}")
	if err != nil {
		t.Fatal(err)
	}
	fault, cors := &chain[0], &chain[1]
	const abort = `{"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: %d}}`
	route, err := routeConfigs(t, `{typed_per_filter_config: {envoy.filters.http.fault: `+strings.Replace(abort, "%d", "401", 1)+`}}`)
	if err != nil {
		t.Fatal(err)
	}
	vhost, err := routeConfigs(t, `{typed_per_filter_config: {
	  envoy.filters.http.fault: `+strings.Replace(abort, "%d", "402", 1)+`,
	  envoy.filters.http.cors: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_methods: by-default-name},
	  my-cors: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_methods: by-my-name}}}`)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := LegacyCors(&routev3.CorsPolicy{AllowMethods: "legacy"}, "cors")
	if err != nil {
		t.Fatal(err)
	}
	merged := append(route.Merge(vhost), legacy)
	if got := merged.For(fault).(*Fault).AbortStatus; got != 401 {
		t.Errorf("fault: got the config aborting %d, want the route's (401)", got)
	}
	if got := string(merged.For(cors).(*Cors).AllowMethods); got != "by-my-name" {
		t.Errorf("cors: got %q, want the entry keyed by the filter's own name", got)
	}
	onlyLegacy := RouteConfigs{legacy}
	if got := string(onlyLegacy.For(cors).(*Cors).AllowMethods); got != "legacy" {
		t.Errorf("cors without per-filter config: got %q, want the legacy field's", got)
	}
	if got := onlyLegacy.For(fault); got != nil {
		t.Errorf("fault: got %v from a CORS field, want nil", got)
	}
}

// stream records what a filter asks of the connection manager.
type stream struct {
	forwarding bool
	hdr        map[string]string
	method     string
	delayed    time.Duration
	answered   int
	forwarded  bool
	resp       []string
	path       string
	conn       Conn
	remote     netip.Addr
	details    string
	logged     []string
	authn      Authn
	body       string
}

func (s *stream) Header(n string) ([]byte, bool) {
	v, ok := s.hdr[n]
	return []byte(v), ok
}
func (s *stream) Method() []byte                { return []byte(s.method) }
func (s *stream) Forwarding() bool              { return s.forwarding }
func (s *stream) Rand() uint64                  { return 0 }
func (s *stream) Delay(d time.Duration)         { s.delayed = d }
func (s *stream) Abort(status, _ int, _ string) { s.answered = status }
func (s *stream) Reply(status int)              { s.answered = status }
func (s *stream) SetResponseHeader(n, v []byte) { s.resp = append(s.resp, string(n)+": "+string(v)) }
func (s *stream) Forward()                      { s.forwarded = true }
func (s *stream) Path() []byte                  { return []byte(s.path) }
func (s *stream) Conn() *Conn                   { return &s.conn }
func (s *stream) RemoteIP() netip.Addr {
	if s.remote.IsValid() {
		return s.remote
	}
	return s.conn.Remote.Addr()
}
func (s *stream) Authn() *Authn { return &s.authn }
func (s *stream) SetRequestHeader(n string, v []byte) {
	if s.hdr == nil {
		s.hdr = map[string]string{}
	}
	s.hdr[n] = string(v)
}
func (s *stream) DelRequestHeader(n string) { delete(s.hdr, n) }
func (s *stream) Unauthorized(body, details string) {
	s.answered, s.details, s.body = 401, details, body
}
func (s *stream) Deny(details string) { s.answered, s.details = 403, details }
func (s *stream) LogRBAC(shadow, allowed bool, p *RBACPolicy) {
	name := "none"
	if p != nil {
		name = p.Name
	}
	s.logged = append(s.logged, fmt.Sprintf("shadow=%v allowed=%v %s", shadow, allowed, name))
}

func TestFaultFilterConfigIsTheDefault(t *testing.T) {
	chain, err := chainOf(t, `{http_filters: [{name: f, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 503}}}, {name: envoy.filters.http.router}]}`)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{forwarding: true}
	if st := chain[0].Filter.Decode(s, nil); st != Stop || s.answered != 503 {
		t.Errorf("no per-route config: got %v answered %d, want Stop with the filter's 503", st, s.answered)
	}
	override, err := CompileFault(&oneSecondDelay, "f")
	if err != nil {
		t.Fatal(err)
	}
	s = &stream{forwarding: true}
	if st := chain[0].Filter.Decode(s, override); st != Continue || s.answered != 0 || s.delayed != time.Second {
		t.Errorf("per-route delay: got %v answered %d delayed %v, want Continue after 1s and no abort", st, s.answered, s.delayed)
	}
	s = &stream{}
	if st := chain[1].Filter.Decode(s, nil); st != Stop || !s.forwarded {
		t.Errorf("router: got %v forwarded %v, want Stop after Forward", st, s.forwarded)
	}
}

func TestCorsFilterLeavesNonForwardingRoutes(t *testing.T) {
	c, err := CompileCors(&httpsOrigins, "cors")
	if err != nil {
		t.Fatal(err)
	}
	preflight := map[string]string{"origin": "https://a", "access-control-request-method": "GET"}
	s := &stream{forwarding: false, method: "OPTIONS", hdr: preflight}
	if st := (corsFilter{}).Decode(s, c); st != Continue || len(s.resp) != 0 {
		t.Errorf("redirect or direct response route: got %v %v, want Continue untouched", st, s.resp)
	}
	s = &stream{forwarding: true, method: "OPTIONS", hdr: preflight}
	if st := (corsFilter{}).Decode(s, c); st != Stop || s.answered != 200 {
		t.Errorf("preflight: got %v answered %d, want Stop with 200", st, s.answered)
	}
}

var (
	oneSecondDelay = faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Second)},
	}}
	httpsOrigins = corsv3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "https://"}}}}
)
