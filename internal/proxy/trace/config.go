package trace

import (
	"fmt"
	"math"
	"os"
	"sort"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"google.golang.org/protobuf/proto"
)

// Config is one connection manager's compiled tracing. It is immutable.
type Config struct {
	// Reporter receives sampled spans; nil when the connection manager
	// only propagates context.
	Reporter *Reporter
	// Client: the connection manager is outbound (CLIENT spans).
	Client bool
	// MaxPathTagLength truncates the http.url tag (Envoy's default 256).
	MaxPathTagLength int
	threshold        uint64
	static           []Tag
	custom           []customTag
}

// customTag is a literal (Header empty) or request-header tag (Value is
// the default).
type customTag struct{ Name, Header, Value string }

// Node is what the proxy knows about itself for span tags.
type Node struct {
	ID      string
	Cluster string
}

// Compile compiles an HCM's tracing. client is the traffic direction
// (outbound); reporters gives the shared Reporter of a provider; path
// names the field in errors.
func Compile(t *hcmv3.HttpConnectionManager_Tracing, client bool, node Node, reporters *Registry, path string) (*Config, error) {
	c := &Config{Client: client, MaxPathTagLength: 256, threshold: sampleScale}
	if p := t.GetRandomSampling(); p != nil {
		v := p.GetValue()
		if v < 0 || v > 100 || math.IsNaN(v) {
			return nil, fmt.Errorf("%s.random_sampling.value: %v must be between 0 and 100", path, v)
		}
		c.threshold = uint64(math.Round(v * sampleScale / 100))
	}
	for _, f := range []struct {
		name string
		p    interface{ GetValue() float64 }
		set  bool
	}{{"client_sampling", t.GetClientSampling(), t.GetClientSampling() != nil}, {"overall_sampling", t.GetOverallSampling(), t.GetOverallSampling() != nil}} {
		if f.set && f.p.GetValue() != 100 {
			return nil, fmt.Errorf("%s.%s: only 100 (the default) is supported; use random_sampling", path, f.name)
		}
	}
	if t.GetVerbose() {
		return nil, fmt.Errorf("%s.verbose: not supported; remove it", path)
	}
	if v := t.GetMaxPathTagLength(); v != nil {
		c.MaxPathTagLength = int(v.GetValue())
	}
	if t.GetSpawnUpstreamSpan().GetValue() {
		return nil, fmt.Errorf("%s.spawn_upstream_span: not supported; remove it (the connection manager's span is the client span)", path)
	}
	c.static = append(c.static, Tag{"node_id", node.ID})
	for i, ct := range t.GetCustomTags() {
		p := fmt.Sprintf("%s.custom_tags[%d]", path, i)
		if ct.GetTag() == "" {
			return nil, fmt.Errorf("%s.tag: must not be empty", p)
		}
		switch ty := ct.GetType().(type) {
		case *tracingtypev3.CustomTag_Literal_:
			c.custom = append(c.custom, customTag{Name: ct.GetTag(), Value: ty.Literal.GetValue()})
		case *tracingtypev3.CustomTag_Environment_:
			v, ok := os.LookupEnv(ty.Environment.GetName())
			if !ok {
				v = ty.Environment.GetDefaultValue()
			}
			c.custom = append(c.custom, customTag{Name: ct.GetTag(), Value: v})
		case *tracingtypev3.CustomTag_RequestHeader:
			if ty.RequestHeader.GetName() == "" {
				return nil, fmt.Errorf("%s.request_header.name: must not be empty", p)
			}
			c.custom = append(c.custom, customTag{Name: ct.GetTag(), Header: ty.RequestHeader.GetName(), Value: ty.RequestHeader.GetDefaultValue()})
		default:
			return nil, fmt.Errorf("%s: %T is not supported; use literal, environment or request_header", p, ct.GetType())
		}
	}
	sort.SliceStable(c.custom, func(i, j int) bool { return c.custom[i].Name < c.custom[j].Name })
	prov := t.GetProvider()
	if prov == nil {
		return nil, fmt.Errorf("%s.provider: missing; set envoy.tracers.opentelemetry or envoy.tracers.zipkin", path)
	}
	pp := path + ".provider.typed_config"
	msg, err := prov.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pp, err)
	}
	var target Target
	switch m := msg.(type) {
	case *tracev3.OpenTelemetryConfig:
		target, err = otelTarget(m, pp)
	case *tracev3.ZipkinConfig:
		target, err = zipkinTarget(m, pp)
	default:
		return nil, fmt.Errorf("%s: %s is not supported; use envoy.config.trace.v3.OpenTelemetryConfig or ZipkinConfig", pp, proto.MessageName(msg))
	}
	if err != nil {
		return nil, err
	}
	if target.ServiceName == "" {
		target.ServiceName = node.Cluster
	}
	if reporters != nil {
		c.Reporter = reporters.Reporter(target)
	}
	return c, nil
}

func otelTarget(m *tracev3.OpenTelemetryConfig, path string) (Target, error) {
	t := Target{ServiceName: m.GetServiceName()}
	switch {
	case m.GetExporter() != nil:
		return t, fmt.Errorf("%s.exporter: not supported; use grpc_service or http_service", path)
	case len(m.GetResourceDetectors()) > 0:
		return t, fmt.Errorf("%s.resource_detectors: not supported; remove them", path)
	case m.GetSampler() != nil:
		return t, fmt.Errorf("%s.sampler: not supported; use the connection manager's random_sampling", path)
	case m.GetGrpcService() != nil && m.GetHttpService() != nil:
		return t, fmt.Errorf("%s: grpc_service and http_service are exclusive", path)
	case m.GetGrpcService() != nil:
		g := m.GetGrpcService()
		eg := g.GetEnvoyGrpc()
		if eg == nil {
			return t, fmt.Errorf("%s.grpc_service: only envoy_grpc is supported", path)
		}
		if eg.GetClusterName() == "" {
			return t, fmt.Errorf("%s.grpc_service.envoy_grpc.cluster_name: must not be empty", path)
		}
		if len(g.GetInitialMetadata()) > 0 {
			return t, fmt.Errorf("%s.grpc_service.initial_metadata: not supported; remove it", path)
		}
		t.Kind, t.Cluster, t.Authority = OTLPGRPC, eg.GetClusterName(), eg.GetAuthority()
		if to := g.GetTimeout(); to != nil {
			t.Timeout = to.AsDuration()
		}
	case m.GetHttpService() != nil:
		h := m.GetHttpService()
		if len(h.GetRequestHeadersToAdd()) > 0 {
			return t, fmt.Errorf("%s.http_service.request_headers_to_add: not supported; remove it", path)
		}
		u := h.GetHttpUri()
		if u.GetCluster() == "" {
			return t, fmt.Errorf("%s.http_service.http_uri.cluster: must not be empty", path)
		}
		t.Kind, t.Cluster = OTLPHTTP, u.GetCluster()
		if err := t.setURI(u.GetUri()); err != nil {
			return t, fmt.Errorf("%s.http_service.http_uri.uri: %w", path, err)
		}
		if to := u.GetTimeout(); to != nil {
			t.Timeout = to.AsDuration()
		}
	default:
		return t, fmt.Errorf("%s: set grpc_service or http_service", path)
	}
	return t, nil
}

func zipkinTarget(m *tracev3.ZipkinConfig, path string) (Target, error) {
	t := Target{Kind: Zipkin, Cluster: m.GetCollectorCluster(), Path: m.GetCollectorEndpoint(), Authority: m.GetCollectorHostname()}
	switch {
	case t.Cluster == "":
		return t, fmt.Errorf("%s.collector_cluster: must not be empty", path)
	case t.Path == "" || t.Path[0] != '/':
		return t, fmt.Errorf("%s.collector_endpoint: %q must be a path such as /api/v2/spans", path, t.Path)
	case m.GetCollectorEndpointVersion() != tracev3.ZipkinConfig_HTTP_JSON:
		return t, fmt.Errorf("%s.collector_endpoint_version: %v is not supported; use HTTP_JSON", path, m.GetCollectorEndpointVersion())
	case !m.GetTraceId_128Bit():
		return t, fmt.Errorf("%s.trace_id_128bit: only true is supported (the proxy makes 128-bit trace ids)", path)
	case m.GetSharedSpanContext() == nil || m.GetSharedSpanContext().GetValue():
		return t, fmt.Errorf("%s.shared_span_context: only false is supported (client and server spans have their own ids, as Istio configures)", path)
	case m.GetSplitSpansForRequest():
		return t, fmt.Errorf("%s.split_spans_for_request: not supported; remove it", path)
	case m.GetTraceContextOption() != tracev3.ZipkinConfig_USE_B3:
		return t, fmt.Errorf("%s.trace_context_option: %v is not supported; remove it (the proxy reads and writes both B3 and W3C)", path, m.GetTraceContextOption())
	}
	return t, nil
}
