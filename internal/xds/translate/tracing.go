package translate

import (
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// Envoy's tracer names.
const (
	OpenTelemetryTracer = "envoy.tracers.opentelemetry"
	ZipkinTracer        = "envoy.tracers.zipkin"
)

// DefaultTraceSampling is Istio's default sampling percentage
// (PILOT_TRACE_SAMPLING, defaultConfig.tracing.sampling).
const DefaultTraceSampling = 1.0

// tracingSpec is the effective tracing of one direction of a workload,
// merged from the Telemetry resources that apply, as Istio does: the root
// namespace's, then the workload's namespace's, then the one selecting the
// workload, each set field overriding the less specific one.
type tracingSpec struct {
	provider string
	sampling *float64
	disabled bool
	tags     map[string]*telemetry.Tracing_CustomTag
}

// telemetries returns the Telemetry resources applying to the proxy, least
// specific first: root namespace (no selector), namespace (no selector),
// workload (selector matching the proxy's labels). Within a level the
// oldest name wins, as for Sidecars.
func (s *scope) telemetries() []*telemetry.Telemetry {
	var root, ns, wl *config.Resource
	for _, r := range s.in.Config.List(config.KindTelemetry) {
		t, ok := r.Spec.(*telemetry.Telemetry)
		if !ok || t == nil {
			continue
		}
		sel := t.GetSelector().GetMatchLabels()
		switch {
		case nsOf(r) == s.proxy.Namespace && len(sel) > 0:
			if wl == nil && registry.Matches(sel, s.proxy.Labels) {
				wl = r
			}
		case len(sel) > 0:
		case nsOf(r) == s.proxy.Namespace && s.proxy.Namespace != s.mesh.RootNamespace:
			if ns == nil {
				ns = r
			}
		case nsOf(r) == s.mesh.RootNamespace:
			if root == nil {
				root = r
			}
		}
	}
	var out []*telemetry.Telemetry
	for _, r := range []*config.Resource{root, ns, wl} {
		if r != nil {
			out = append(out, r.Spec.(*telemetry.Telemetry))
		}
	}
	return out
}

// tracingFor merges the tracing of one direction (client: outbound).
func (s *scope) tracingFor(client bool) tracingSpec {
	ts := tracingSpec{}
	if len(s.mesh.DefaultTracingProviders) > 0 {
		ts.provider = s.mesh.DefaultTracingProviders[0]
	}
	want := telemetry.WorkloadMode_SERVER
	if client {
		want = telemetry.WorkloadMode_CLIENT
	}
	for _, t := range s.telemetries() {
		for _, tr := range t.GetTracing() {
			if m := tr.GetMatch().GetMode(); m != telemetry.WorkloadMode_CLIENT_AND_SERVER && m != want {
				continue
			}
			if len(tr.GetProviders()) > 0 {
				ts.provider = tr.GetProviders()[0].GetName()
			}
			if v := tr.GetRandomSamplingPercentage(); v != nil {
				x := v.GetValue()
				ts.sampling = &x
			}
			if v := tr.GetDisableSpanReporting(); v != nil {
				ts.disabled = v.GetValue()
			}
			if len(tr.GetCustomTags()) > 0 {
				if ts.tags == nil {
					ts.tags = map[string]*telemetry.Tracing_CustomTag{}
				}
				for k, v := range tr.GetCustomTags() {
					ts.tags[k] = v
				}
			}
		}
	}
	return ts
}

// tracing is the HCM tracing for one direction, or nil when no provider
// applies, the provider is unknown or not a tracer Trellis implements, or
// span reporting is disabled.
func (s *scope) tracing(client bool) *hcmv3.HttpConnectionManager_Tracing {
	ts := s.tracingFor(client)
	if ts.provider == "" || ts.disabled {
		return nil
	}
	var ep *meshv1alpha1.MeshConfig_ExtensionProvider
	for _, p := range s.mesh.ExtensionProviders {
		if p.GetName() == ts.provider {
			ep = p
			break
		}
	}
	if ep == nil {
		return nil
	}
	sampling := DefaultTraceSampling
	if s.mesh.TraceSampling != nil {
		sampling = *s.mesh.TraceSampling
	}
	if ts.sampling != nil {
		sampling = *ts.sampling
	}
	t := &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: sampling},
		CustomTags:     s.tracingTags(ts.tags),
	}
	switch {
	case ep.GetOpentelemetry() != nil:
		o := ep.GetOpentelemetry()
		host := s.providerHost(o.GetService())
		cluster := OutboundClusterName(o.GetPort(), "", host)
		cfg := &tracev3.OpenTelemetryConfig{ServiceName: s.canonicalService() + "." + s.proxy.Namespace}
		if h := o.GetHttp(); h != nil {
			uri := "http://" + host + ":" + strconv.Itoa(int(o.GetPort())) + h.GetPath()
			hs := &corev3.HttpService{HttpUri: &corev3.HttpUri{Uri: uri, HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster}, Timeout: h.GetTimeout()}}
			if hs.HttpUri.Timeout == nil {
				hs.HttpUri.Timeout = dur(0)
			}
			cfg.HttpService = hs
		} else {
			gs := &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster, Authority: host}}}
			if g := o.GetGrpc(); g != nil {
				gs.Timeout = g.GetTimeout()
			}
			cfg.GrpcService = gs
		}
		if n := o.GetMaxTagLength(); n > 0 {
			t.MaxPathTagLength = wrapperspb.UInt32(n)
		}
		t.Provider = &tracev3.Tracing_Http{Name: OpenTelemetryTracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(cfg)}}
	case ep.GetZipkin() != nil:
		z := ep.GetZipkin()
		host := s.providerHost(z.GetService())
		path := z.GetPath()
		if path == "" {
			path = "/api/v2/spans"
		}
		cfg := &tracev3.ZipkinConfig{
			CollectorCluster:         OutboundClusterName(z.GetPort(), "", host),
			CollectorEndpoint:        path,
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			CollectorHostname:        host,
			TraceId_128Bit:           !z.GetEnable_64BitTraceId(),
			SharedSpanContext:        wrapperspb.Bool(false),
		}
		if n := z.GetMaxTagLength(); n > 0 {
			t.MaxPathTagLength = wrapperspb.UInt32(n)
		}
		t.Provider = &tracev3.Tracing_Http{Name: ZipkinTracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(cfg)}}
	default:
		return nil
	}
	return t
}

// providerHost resolves a provider's service ("svc.ns.svc.cluster.local"
// or "ns/svc.ns.svc.cluster.local", Istio's two spellings).
func (s *scope) providerHost(svc string) string {
	for i := 0; i < len(svc); i++ {
		if svc[i] == '/' {
			return svc[i+1:]
		}
	}
	return svc
}

// The labels naming a workload's canonical service and revision, in
// Istio's order of preference.
var (
	canonicalServiceLabels  = []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"}
	canonicalRevisionLabels = []string{"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"}
)

func canonicalLabel(l map[string]string, keys []string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}

// canonicalService is the workload's istio.canonical_service: a label,
// else the workload name.
func (s *scope) canonicalService() string {
	if v := canonicalLabel(s.proxy.Labels, canonicalServiceLabels); v != "" {
		return v
	}
	if s.proxy.Name != "" {
		return s.proxy.Name
	}
	return "unknown"
}

func (s *scope) canonicalRevision() string {
	if v := canonicalLabel(s.proxy.Labels, canonicalRevisionLabels); v != "" {
		return v
	}
	return "latest"
}

// tracingTags are Istio's span tags (literals of the workload's identity)
// and the Telemetry's custom tags, sorted by name.
func (s *scope) tracingTags(custom map[string]*telemetry.Tracing_CustomTag) []*tracingtypev3.CustomTag {
	lit := func(k, v string) *tracingtypev3.CustomTag {
		return &tracingtypev3.CustomTag{Tag: k, Type: &tracingtypev3.CustomTag_Literal_{Literal: &tracingtypev3.CustomTag_Literal{Value: v}}}
	}
	meshID := s.mesh.TrustDomain
	if meshID == "" {
		meshID = DefaultTrustDomain
	}
	clusterID := s.proxy.Cluster
	if clusterID == "" {
		clusterID = "Kubernetes"
	}
	out := []*tracingtypev3.CustomTag{
		lit("istio.canonical_revision", s.canonicalRevision()),
		lit("istio.canonical_service", s.canonicalService()),
		lit("istio.cluster_id", clusterID),
		lit("istio.mesh_id", meshID),
		lit("istio.namespace", s.proxy.Namespace),
	}
	names := make([]string, 0, len(custom))
	for k := range custom {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch ct := custom[k].GetType().(type) {
		case *telemetry.Tracing_CustomTag_Literal:
			out = append(out, lit(k, ct.Literal.GetValue()))
		case *telemetry.Tracing_CustomTag_Header:
			out = append(out, &tracingtypev3.CustomTag{Tag: k, Type: &tracingtypev3.CustomTag_RequestHeader{RequestHeader: &tracingtypev3.CustomTag_Header{Name: ct.Header.GetName(), DefaultValue: ct.Header.GetDefaultValue()}}})
		case *telemetry.Tracing_CustomTag_Environment:
			out = append(out, &tracingtypev3.CustomTag{Tag: k, Type: &tracingtypev3.CustomTag_Environment_{Environment: &tracingtypev3.CustomTag_Environment{Name: ct.Environment.GetName(), DefaultValue: ct.Environment.GetDefaultValue()}}})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetTag() < out[j].GetTag() })
	return out
}

// routeDecorator names the spans of a VirtualService route as Istio does:
// the destination's host:port and the match path ("/*" for any path, the
// prefix with "*", the exact path, or the regex) when the route goes to
// one cluster, else the VirtualService's name with the port.
func routeDecorator(r *routev3.Route, vsName string, port uint32) *routev3.Decorator {
	path := "/*"
	switch ps := r.GetMatch().GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		path = ps.Prefix + "*"
	case *routev3.RouteMatch_Path:
		path = ps.Path
	case *routev3.RouteMatch_SafeRegex:
		path = ps.SafeRegex.GetRegex()
	case *routev3.RouteMatch_PathSeparatedPrefix:
		path = ps.PathSeparatedPrefix + "*"
	}
	if c := r.GetRoute().GetCluster(); strings.HasPrefix(c, "outbound|") {
		if parts := strings.SplitN(c, "|", 4); len(parts) == 4 {
			return &routev3.Decorator{Operation: parts[3] + ":" + parts[1] + path}
		}
	}
	return &routev3.Decorator{Operation: vsName + ":" + u32(port) + path}
}

// ApplyMeshConfig sets the tracing options from a MeshConfig:
// extensionProviders, defaultProviders.tracing and
// defaultConfig.tracing.sampling (0 means unset, as in Istio, leaving 1%).
func (m *MeshOptions) ApplyMeshConfig(mc *meshv1alpha1.MeshConfig) {
	if mc == nil {
		return
	}
	m.ExtensionProviders = mc.GetExtensionProviders()
	m.DefaultTracingProviders = mc.GetDefaultProviders().GetTracing()
	m.DefaultAccessLogProviders = mc.GetDefaultProviders().GetAccessLogging()
	if v := mc.GetDefaultConfig().GetTracing().GetSampling(); v != 0 {
		m.TraceSampling = &v
	}
}
