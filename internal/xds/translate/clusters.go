package translate

import (
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

const (
	defaultConnectTimeout  = 10 * time.Second
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// policy is a DestinationRule traffic policy after port-level and subset
// overrides: each field is the most specific one set.
type policy struct {
	lb   *networking.LoadBalancerSettings
	pool *networking.ConnectionPoolSettings
	od   *networking.OutlierDetection
	tls  *networking.ClientTLSSettings
}

// forPort applies tp and then its portLevelSettings for port on top of p.
func (p policy) overlay(tp *networking.TrafficPolicy, port uint32) policy {
	if tp == nil {
		return p
	}
	set := func(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, od *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
		if lb != nil {
			p.lb = lb
		}
		if pool != nil {
			p.pool = pool
		}
		if od != nil {
			p.od = od
		}
		if tls != nil {
			p.tls = tls
		}
	}
	set(tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls())
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			set(pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls())
		}
	}
	return p
}

// trafficPolicy is the effective policy for host:port[subset] under dr
// (nil dr means none): the rule's policy, its port-level settings, then the
// subset's policy and its port-level settings.
func trafficPolicy(dr *destRule, port uint32, subset string) policy {
	var p policy
	if dr == nil {
		return p
	}
	p = p.overlay(dr.spec.GetTrafficPolicy(), port)
	for _, ss := range dr.spec.GetSubsets() {
		if ss.GetName() == subset {
			p = p.overlay(ss.GetTrafficPolicy(), port)
		}
	}
	return p
}

// outboundClusters builds outbound|PORT||HOST and one cluster per
// DestinationRule subset for every visible service port.
func (s *scope) outboundClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, svc := range s.services {
		dr := s.destinationRule(svc.Hostname)
		for _, port := range svc.Ports {
			out = append(out, s.buildCluster(svc, port, "", nil, dr))
			if dr == nil {
				continue
			}
			for _, ss := range dr.spec.GetSubsets() {
				if ss.GetName() == "" {
					continue
				}
				out = append(out, s.buildCluster(svc, port, ss.GetName(), ss.GetLabels(), dr))
			}
		}
	}
	return out
}

func (s *scope) buildCluster(svc *registry.Service, port registry.Port, subset string, subsetLabels map[string]string, dr *destRule) *clusterv3.Cluster {
	name := OutboundClusterName(port.Number, subset, svc.Hostname)
	pol := trafficPolicy(dr, port.Number, subset)
	c := &clusterv3.Cluster{
		Name:            name,
		ConnectTimeout:  s.shared.connectTimeout,
		LbPolicy:        clusterv3.Cluster_LEAST_REQUEST,
		CircuitBreakers: s.shared.breakers,
	}
	meta := map[string]*structpb.Value{"services": s.servicesMeta(svc)}
	if subset != "" {
		meta["subset"] = structpb.NewStringValue(subset)
	}
	if dr != nil {
		meta["config"] = structpb.NewStringValue(configPath("destination-rule", dr.res.Namespace, dr.res.Name))
	}
	c.Metadata = istioMetadata(meta)

	switch svc.Resolution {
	case registry.ResolutionNone:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	case registry.ResolutionDNS:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
		c.LoadAssignment = s.loadAssignment(name, svc, port.Number, subsetLabels, pol, false)
	default:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: s.shared.ads, ServiceName: name}
	}
	applyLB(c, pol.lb, s.shared.leastRequest)
	applyPool(c, pol.pool, port.Protocol)
	applyOutlier(c, pol.od)
	s.applyClusterTLS(c, svc, port.Number, subset, pol.tls)
	return c
}

func applyLB(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings, leastRequest *clusterv3.Cluster_LeastRequestLbConfig_) {
	if c.LbPolicy == clusterv3.Cluster_LEAST_REQUEST {
		c.LbConfig = leastRequest
	}
	if lb == nil || c.LbPolicy == clusterv3.Cluster_CLUSTER_PROVIDED {
		return
	}
	switch {
	case lb.GetConsistentHash() != nil:
		ch := lb.GetConsistentHash()
		if mg := ch.GetMaglev(); mg != nil {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if mg.GetTableSize() > 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapU64(mg.GetTableSize())}}
			}
			return
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		size := ch.GetRingHash().GetMinimumRingSize()
		if size == 0 {
			size = ch.GetMinimumRingSize()
		}
		if size == 0 {
			size = 1024
		}
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapU64(size)}}
	default:
		switch lb.GetSimple() {
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		case networking.LoadBalancerSettings_RANDOM:
			c.LbPolicy = clusterv3.Cluster_RANDOM
		case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		case networking.LoadBalancerSettings_PASSTHROUGH:
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
			c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			c.EdsClusterConfig = nil
			c.LoadAssignment = nil
		}
	}
	if c.LbPolicy == clusterv3.Cluster_LEAST_REQUEST {
		c.LbConfig = leastRequest
	}
}

func applyPool(c *clusterv3.Cluster, pool *networking.ConnectionPoolSettings, protocol registry.Protocol) {
	opts := &httpv3.HttpProtocolOptions{}
	needOpts := false
	if protocol == registry.HTTP2 || protocol == registry.GRPC {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
		needOpts = true
	}
	if pool != nil {
		// The default thresholds are shared between clusters: copy first.
		th := proto.Clone(c.CircuitBreakers.Thresholds[0]).(*clusterv3.CircuitBreakers_Thresholds)
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
		if t := pool.GetTcp(); t != nil {
			if t.GetMaxConnections() > 0 {
				th.MaxConnections = u32v(uint32(t.GetMaxConnections()))
			}
			if t.GetConnectTimeout() != nil {
				c.ConnectTimeout = t.GetConnectTimeout()
			}
			if ka := t.GetTcpKeepalive(); ka != nil {
				c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
					KeepaliveProbes:   optU32(ka.GetProbes()),
					KeepaliveTime:     optSeconds(ka.GetTime().AsDuration()),
					KeepaliveInterval: optSeconds(ka.GetInterval().AsDuration()),
				}}
			}
			if t.GetMaxConnectionDuration() != nil {
				opts.CommonHttpProtocolOptions = commonOpts(opts)
				opts.CommonHttpProtocolOptions.MaxConnectionDuration = t.GetMaxConnectionDuration()
				needOpts = true
			}
		}
		if h := pool.GetHttp(); h != nil {
			if h.GetHttp1MaxPendingRequests() > 0 {
				th.MaxPendingRequests = u32v(uint32(h.GetHttp1MaxPendingRequests()))
			}
			if h.GetHttp2MaxRequests() > 0 {
				th.MaxRequests = u32v(uint32(h.GetHttp2MaxRequests()))
			}
			if h.GetMaxRetries() > 0 {
				th.MaxRetries = u32v(uint32(h.GetMaxRetries()))
			}
			if h.GetIdleTimeout() != nil {
				opts.CommonHttpProtocolOptions = commonOpts(opts)
				opts.CommonHttpProtocolOptions.IdleTimeout = h.GetIdleTimeout()
				needOpts = true
			}
			if h.GetMaxRequestsPerConnection() > 0 {
				opts.CommonHttpProtocolOptions = commonOpts(opts)
				opts.CommonHttpProtocolOptions.MaxRequestsPerConnection = u32v(uint32(h.GetMaxRequestsPerConnection()))
				needOpts = true
			}
			if h.GetUseClientProtocol() {
				opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
					HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				}}
				needOpts = true
			}
			if n := h.GetMaxConcurrentStreams(); n > 0 {
				if e, ok := opts.UpstreamProtocolOptions.(*httpv3.HttpProtocolOptions_ExplicitHttpConfig_); ok {
					if h2 := e.ExplicitHttpConfig.GetHttp2ProtocolOptions(); h2 != nil {
						h2.MaxConcurrentStreams = u32v(uint32(n))
					}
				}
			}
			if h.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && protocol == registry.HTTP && opts.UpstreamProtocolOptions == nil {
				opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}}
				needOpts = true
			}
		}
	}
	if needOpts {
		if opts.UpstreamProtocolOptions == nil {
			// The port's protocol is HTTP/1.1 (HTTP2/GRPC set it above).
			opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			}}
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(opts)}
	}
}

func commonOpts(o *httpv3.HttpProtocolOptions) *corev3.HttpProtocolOptions {
	if o.CommonHttpProtocolOptions == nil {
		return &corev3.HttpProtocolOptions{}
	}
	return o.CommonHttpProtocolOptions
}

func applyOutlier(c *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{
		EnforcingSuccessRate: u32v(0),
		Interval:             dur(10 * time.Second),
		BaseEjectionTime:     dur(30 * time.Second),
		MaxEjectionPercent:   u32v(10),
	}
	if od.GetInterval() != nil {
		out.Interval = od.GetInterval()
	}
	if od.GetBaseEjectionTime() != nil {
		out.BaseEjectionTime = od.GetBaseEjectionTime()
	}
	if od.GetMaxEjectionPercent() > 0 {
		out.MaxEjectionPercent = u32v(uint32(od.GetMaxEjectionPercent()))
	}
	consecutive5xx := od.GetConsecutive_5XxErrors()
	if consecutive5xx == nil && od.GetConsecutiveErrors() > 0 {
		consecutive5xx = u32v(uint32(od.GetConsecutiveErrors()))
	}
	if consecutive5xx != nil {
		out.Consecutive_5Xx = u32v(consecutive5xx.GetValue())
		if consecutive5xx.GetValue() > 0 {
			out.EnforcingConsecutive_5Xx = u32v(100)
		} else {
			out.EnforcingConsecutive_5Xx = u32v(0)
		}
	}
	if g := od.GetConsecutiveGatewayErrors(); g != nil {
		out.ConsecutiveGatewayFailure = u32v(g.GetValue())
		if g.GetValue() > 0 {
			out.EnforcingConsecutiveGatewayFailure = u32v(100)
		} else {
			out.EnforcingConsecutiveGatewayFailure = u32v(0)
		}
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if lo := od.GetConsecutiveLocalOriginFailures(); lo != nil {
			out.ConsecutiveLocalOriginFailure = u32v(lo.GetValue())
			out.EnforcingConsecutiveLocalOriginFailure = u32v(100)
		}
	}
	c.OutlierDetection = out
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.GetMinHealthPercent())}}
}

// passthroughClusters are the fixed clusters every sidecar gets.
func passthroughClusters() []*clusterv3.Cluster {
	return []*clusterv3.Cluster{
		{
			Name:                 BlackHoleCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       dur(defaultConnectTimeout),
		},
		{
			Name:                 PassthroughCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			ConnectTimeout:       dur(defaultConnectTimeout),
			CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxConnections:     u32v(math.MaxUint32),
				MaxPendingRequests: u32v(math.MaxUint32),
				MaxRequests:        u32v(math.MaxUint32),
				MaxRetries:         u32v(math.MaxUint32),
			}}},
		},
	}
}

// staticCluster is a STATIC cluster with one endpoint.
func staticCluster(name, addr string, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       dur(defaultConnectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}},
			}}}},
		},
	}
}

// sharedParts are read-only messages reused across one translation's
// resources to save allocations (outputs are never altered after
// translation).
type sharedParts struct {
	ads            *corev3.ConfigSource
	connectTimeout *durationpb.Duration
	breakers       *clusterv3.CircuitBreakers
	leastRequest   *clusterv3.Cluster_LeastRequestLbConfig_
	servicesMeta   map[string]*structpb.Value
	// lbEndpoints holds each endpoint's EDS form, shared by the service's
	// cluster and its subset clusters.
	lbEndpoints map[*registry.Endpoint]*endpointv3.LbEndpoint
}

func newSharedParts() sharedParts {
	return sharedParts{
		ads:            adsSource(),
		connectTimeout: dur(defaultConnectTimeout),
		breakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections:     u32v(math.MaxUint32),
			MaxPendingRequests: u32v(math.MaxUint32),
			MaxRequests:        u32v(math.MaxUint32),
			MaxRetries:         u32v(math.MaxUint32),
		}}},
		leastRequest: &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: u32v(2)}},
		servicesMeta: map[string]*structpb.Value{},
		lbEndpoints:  map[*registry.Endpoint]*endpointv3.LbEndpoint{},
	}
}

// servicesMeta is the cluster metadata "services" entry of svc, shared by
// all of its clusters.
func (s *scope) servicesMeta(svc *registry.Service) *structpb.Value {
	if v := s.shared.servicesMeta[svc.Hostname]; v != nil {
		return v
	}
	v := servicesMetaValue([]*registry.Service{svc})
	s.shared.servicesMeta[svc.Hostname] = v
	return v
}
