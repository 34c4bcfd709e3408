package translate

import (
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Envoy's well-known filter names, as they appear in the config.
const (
	HTTPConnectionManagerFilter = "envoy.filters.network.http_connection_manager"
	TCPProxyFilter              = "envoy.filters.network.tcp_proxy"
	FaultFilter                 = "envoy.filters.http.fault"
	CorsFilter                  = "envoy.filters.http.cors"
	RouterFilter                = "envoy.filters.http.router"
	OriginalDstFilter           = "envoy.filters.listener.original_dst"
	TLSInspectorFilter          = "envoy.filters.listener.tls_inspector"
	HTTPInspectorFilter         = "envoy.filters.listener.http_inspector"
	FileAccessLog               = "envoy.access_loggers.file"
)

func listenerFilter(name string) *listenerv3.ListenerFilter {
	var cfg *anypb.Any
	switch name {
	case OriginalDstFilter:
		cfg = mustAny(&originaldstv3.OriginalDst{})
	case TLSInspectorFilter:
		cfg = mustAny(&tlsinspectorv3.TlsInspector{})
	case HTTPInspectorFilter:
		cfg = mustAny(&httpinspectorv3.HttpInspector{})
	}
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: cfg}}
}

// hcmOptions says how one HTTP connection manager differs from the default.
type hcmOptions struct {
	statPrefix string
	rds        string                      // route config name, or
	inline     *routev3.RouteConfiguration // an inline route config
	edge       bool                        // gateway: trust the client address, no internal headers from outside
	inbound    bool                        // sidecar inbound: router only
	// authz are the jwt_authn filter (RequestAuthentication) and the RBAC
	// filters (AuthorizationPolicy), first in the chain.
	authz []*hcmv3.HttpFilter
}

func (s *scope) hcm(o hcmOptions) *listenerv3.Filter {
	h := &hcmv3.HttpConnectionManager{
		CodecType:         hcmv3.HttpConnectionManager_AUTO,
		StatPrefix:        o.statPrefix,
		StreamIdleTimeout: dur(0),
		GenerateRequestId: wrapperspb.Bool(true),
		UseRemoteAddress:  wrapperspb.Bool(o.edge),
		UpgradeConfigs:    []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		NormalizePath:     wrapperspb.Bool(true),
		AccessLog:         s.accessLogs(!o.inbound),
	}
	if o.inline != nil {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: o.inline}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: o.rds}}
	}
	h.Tracing = s.tracing(!o.inbound)
	h.HttpFilters = append(h.HttpFilters, o.authz...)
	if !o.inbound {
		h.HttpFilters = append(h.HttpFilters,
			&hcmv3.HttpFilter{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
			&hcmv3.HttpFilter{Name: CorsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}},
		)
	}
	if sf := s.statsHTTPFilter(!o.inbound); sf != nil {
		h.HttpFilters = append(h.HttpFilters, sf)
	}
	h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	return &listenerv3.Filter{Name: HTTPConnectionManagerFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
}

// tcpProxy forwards a connection to cluster, or splits connections over
// weighted clusters when more than one is given: the tcp_proxy filter,
// after the istio.stats filter when a Telemetry customizes the metrics.
func (s *scope) tcpProxy(statPrefix string, clusters []weightedName) []*listenerv3.Filter {
	client := !strings.HasPrefix(strings.ToLower(statPrefix), "inbound")
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix, AccessLog: s.accessLogs(client), IdleTimeout: dur(time.Hour)}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0].name}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c.name, Weight: c.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	f := &listenerv3.Filter{Name: TCPProxyFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
	if sf := s.statsNetworkFilter(client); sf != nil {
		return []*listenerv3.Filter{sf, f}
	}
	return []*listenerv3.Filter{f}
}

type weightedName struct {
	name   string
	weight uint32
}

func (s *scope) accessLog() []*accesslogv3.AccessLog {
	if s.mesh.AccessLogFile == "" {
		return nil
	}
	return []*accesslogv3.AccessLog{fileAccessLog(s.mesh.AccessLogFile, s.mesh.AccessLogEncoding)}
}

// fileAccessLog is a file access log in Istio's default TEXT or JSON
// layout.
func fileAccessLog(path, encoding string) *accesslogv3.AccessLog {
	fl := &filev3.FileAccessLog{Path: path}
	if encoding == "JSON" {
		fields := map[string]*structpb.Value{}
		for k, v := range jsonAccessLogFields {
			fields[k] = structpb.NewStringValue(v)
		}
		fl.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
		}}
	}
	return &accesslogv3.AccessLog{Name: FileAccessLog, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fl)}}
}

// jsonAccessLogFields is Istio's default JSON access log layout.
var jsonAccessLogFields = map[string]string{
	"start_time":                "%START_TIME%",
	"method":                    "%REQ(:METHOD)%",
	"path":                      "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"protocol":                  "%PROTOCOL%",
	"response_code":             "%RESPONSE_CODE%",
	"response_flags":            "%RESPONSE_FLAGS%",
	"bytes_received":            "%BYTES_RECEIVED%",
	"bytes_sent":                "%BYTES_SENT%",
	"duration":                  "%DURATION%",
	"upstream_host":             "%UPSTREAM_HOST%",
	"upstream_cluster":          "%UPSTREAM_CLUSTER%",
	"downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
	"authority":                 "%REQ(:AUTHORITY)%",
	"request_id":                "%REQ(X-REQUEST-ID)%",
	"user_agent":                "%REQ(USER-AGENT)%",
}

func filterChain(name string, match *listenerv3.FilterChainMatch, filters ...*listenerv3.Filter) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: match, Filters: filters}
}

func listener(name, addr string, port uint32, bind bool) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name, Address: socketAddress(addr, port), TrafficDirection: corev3.TrafficDirection_OUTBOUND}
	if !bind {
		l.BindToPort = wrapperspb.Bool(false)
	}
	return l
}
