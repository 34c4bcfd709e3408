package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellis-mesh/trellis/internal/proxy/healthcheck"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// fieldErrors collects every problem of one resource with its field path.
type fieldErrors struct {
	prefix string
	errs   []error
}

func (f *fieldErrors) add(path, format string, args ...any) {
	f.errs = append(f.errs, fmt.Errorf("%s%s: %s", f.prefix, path, fmt.Sprintf(format, args...)))
}

func (f *fieldErrors) err() error { return errors.Join(f.errs...) }

func dur(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

func u32(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.GetValue()
}

// Compile validates one cluster proto and returns its compiled form
// without runtime state (no goroutines started). It is exported for fuzzing
// and for tools; the Manager is the normal way in.
func Compile(pc *clusterv3.Cluster) (*Cluster, error) {
	c, err := compile(pc, "", noSecrets{})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func compile(pc *clusterv3.Cluster, prefix string, secrets SecretSource) (*Cluster, error) {
	fe := &fieldErrors{prefix: prefix}
	if pc == nil {
		return nil, errors.New(prefix + "cluster: must not be null")
	}
	c := &Cluster{Name: pc.GetName(), proto: pc}
	c.Reasons = respdetail.ForCluster(c.Name)
	if c.Name == "" {
		fe.add("name", "must not be empty")
	}
	if pc.GetClusterType() != nil {
		fe.add("cluster_type", "custom cluster types are not supported; use type EDS, STATIC, STRICT_DNS or ORIGINAL_DST")
	}
	switch pc.GetType() {
	case clusterv3.Cluster_STATIC:
		c.Type = TypeStatic
	case clusterv3.Cluster_STRICT_DNS:
		c.Type = TypeStrictDNS
	case clusterv3.Cluster_LOGICAL_DNS:
		c.Type = TypeLogicalDNS
	case clusterv3.Cluster_EDS:
		c.Type = TypeEDS
		ec := pc.GetEdsClusterConfig()
		if ec == nil {
			fe.add("eds_cluster_config", "is required for type EDS")
		} else if src := ec.GetEdsConfig(); src != nil && src.GetConfigSourceSpecifier() != nil && src.GetAds() == nil {
			fe.add("eds_cluster_config.eds_config", "only ads config sources are supported")
		}
		c.EDSServiceName = ec.GetServiceName()
		if c.EDSServiceName == "" {
			c.EDSServiceName = c.Name
		}
	case clusterv3.Cluster_ORIGINAL_DST:
		c.Type = TypeOriginalDst
		c.OriginalDst = true
	default:
		fe.add("type", "unsupported discovery type %v", pc.GetType())
	}
	c.ConnectTimeout = dur(pc.GetConnectTimeout(), 5*time.Second)
	if c.ConnectTimeout < 0 {
		fe.add("connect_timeout", "must not be negative, got %v", c.ConnectTimeout)
	}
	compileLB(pc, c, fe)
	compileProtocol(pc, c, fe)
	compileBreakers(pc, c, fe)
	if od := pc.GetOutlierDetection(); od != nil {
		cfg := compileOutlier(od, fe)
		c.outlierCfg = &cfg
	}
	if hcs := pc.GetHealthChecks(); len(hcs) > 0 {
		if len(hcs) > 1 {
			fe.add("health_checks", "only one health check per cluster is supported, got %d", len(hcs))
		}
		cfg := compileHealthCheck(hcs[0], fe)
		c.hcConfig = &cfg
	}
	c.TLS = compileTransport(pc.GetTransportSocket(), "transport_socket", secrets, fe)
	c.sockets = compileSocketMatches(pc, secrets, fe)
	if pc.GetLbSubsetConfig() != nil && len(pc.GetLbSubsetConfig().GetSubsetSelectors()) > 0 {
		fe.add("lb_subset_config", "subset load balancing is not supported; use one cluster per subset")
	}
	if bc := pc.GetUpstreamBindConfig(); bc != nil {
		sa := bc.GetSourceAddress()
		if sa == nil || sa.GetAddress() == "" {
			fe.add("upstream_bind_config.source_address.address", "must be set")
		} else {
			c.UpstreamBindSource = sa.GetAddress()
		}
	}
	switch pc.GetDnsLookupFamily() {
	case clusterv3.Cluster_V4_ONLY:
		c.dnsFamily = "ip4"
	case clusterv3.Cluster_V6_ONLY:
		c.dnsFamily = "ip6"
	default:
		c.dnsFamily = "ip"
	}
	c.dnsRate = dur(pc.GetDnsRefreshRate(), 5*time.Second)
	if c.dnsRate <= 0 {
		c.dnsRate = 5 * time.Second
	}
	switch c.Type {
	case TypeStatic, TypeStrictDNS, TypeLogicalDNS:
		if la := pc.GetLoadAssignment(); la != nil {
			if _, err := compileEndpoints(la, c.Name, "load_assignment", c.Type != TypeStatic, nil); err != nil {
				fe.errs = append(fe.errs, prefixErr(prefix, err))
			}
			c.static = la
		} else if c.Type != TypeStatic {
			fe.add("load_assignment", "is required for type %v", c.Type)
		}
	case TypeEDS, TypeOriginalDst:
		if pc.GetLoadAssignment() != nil && c.Type == TypeOriginalDst {
			fe.add("load_assignment", "must not be set for ORIGINAL_DST clusters")
		}
	}
	compileMetadata(pc.GetMetadata(), c, fe)
	if err := fe.err(); err != nil {
		return nil, err
	}
	c.dialer = pool.Dialer{Timeout: c.ConnectTimeout, Bind: c.UpstreamBindSource, KeepAlive: c.TCPKeepalive, TLS: c.TLS}
	for i := range c.sockets {
		c.sockets[i].dialer = c.dialer
		c.sockets[i].dialer.TLS = c.sockets[i].tls
	}
	return c, nil
}

func prefixErr(prefix string, err error) error {
	if prefix == "" {
		return err
	}
	return fmt.Errorf("%s%w", prefix, err)
}

func compileLB(pc *clusterv3.Cluster, c *Cluster, fe *fieldErrors) {
	switch pc.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		c.LB.Policy = lb.RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		c.LB.Policy = lb.LeastRequest
		if cfg := pc.GetLeastRequestLbConfig(); cfg != nil {
			c.LB.ChoiceCount = u32(cfg.GetChoiceCount(), 2)
			if c.LB.ChoiceCount < 2 {
				fe.add("least_request_lb_config.choice_count", "must be at least 2, got %d", c.LB.ChoiceCount)
			}
		}
	case clusterv3.Cluster_RANDOM:
		c.LB.Policy = lb.Random
	case clusterv3.Cluster_RING_HASH:
		c.LB.Policy = lb.RingHash
		if cfg := pc.GetRingHashLbConfig(); cfg != nil {
			if cfg.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
				fe.add("ring_hash_lb_config.hash_function", "only XX_HASH is supported")
			}
			if v := cfg.GetMinimumRingSize(); v != nil {
				c.LB.MinRingSize = v.GetValue()
			}
			if v := cfg.GetMaximumRingSize(); v != nil {
				c.LB.MaxRingSize = v.GetValue()
			}
			if c.LB.MinRingSize > 0 && c.LB.MaxRingSize > 0 && c.LB.MinRingSize > c.LB.MaxRingSize {
				fe.add("ring_hash_lb_config.minimum_ring_size", "must not exceed maximum_ring_size (%d > %d)", c.LB.MinRingSize, c.LB.MaxRingSize)
			}
			if c.LB.MaxRingSize > 8*1024*1024 {
				fe.add("ring_hash_lb_config.maximum_ring_size", "must be at most 8388608, got %d", c.LB.MaxRingSize)
			}
		}
	case clusterv3.Cluster_MAGLEV:
		c.LB.Policy = lb.Maglev
		if cfg := pc.GetMaglevLbConfig(); cfg != nil && cfg.GetTableSize() != nil {
			n := cfg.GetTableSize().GetValue()
			if !isPrime(n) || n > 5000011 {
				fe.add("maglev_lb_config.table_size", "must be a prime no larger than 5000011, got %d", n)
			}
			c.LB.MaglevTableSize = n
		}
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if pc.GetType() != clusterv3.Cluster_ORIGINAL_DST {
			fe.add("lb_policy", "CLUSTER_PROVIDED is only valid for ORIGINAL_DST clusters")
		}
	default:
		fe.add("lb_policy", "unsupported policy %v; use ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV", pc.GetLbPolicy())
	}
	if pc.GetLoadBalancingPolicy() != nil {
		fe.add("load_balancing_policy", "not supported; use lb_policy")
	}
	if cl := pc.GetCommonLbConfig(); cl != nil {
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			v := t.GetValue()
			if v < 0 || v > 100 {
				fe.add("common_lb_config.healthy_panic_threshold", "must be within [0, 100], got %v", v)
			}
			c.LB.PanicThreshold = &v
		}
		if cl.GetLocalityWeightedLbConfig() != nil {
			c.LB.LocalityWeighted = true
		}
		if cl.GetZoneAwareLbConfig() != nil {
			fe.add("common_lb_config.zone_aware_lb_config", "not supported; use EDS priorities for locality failover")
		}
	}
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for i := uint64(2); i*i <= n; i++ {
		if n%i == 0 {
			return false
		}
	}
	return true
}

func compileProtocol(pc *clusterv3.Cluster, c *Cluster, fe *fieldErrors) {
	if pc.GetHttp2ProtocolOptions() != nil {
		c.HTTP2 = true
	}
	if v := pc.GetMaxRequestsPerConnection(); v != nil {
		c.MaxRequestsPerConnection = v.GetValue()
	}
	if ka := pc.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		c.TCPKeepalive = &net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if v := ka.GetKeepaliveTime(); v != nil {
			c.TCPKeepalive.Idle = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveInterval(); v != nil {
			c.TCPKeepalive.Interval = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveProbes(); v != nil {
			c.TCPKeepalive.Count = int(v.GetValue())
		}
	}
	if cp := pc.GetCommonHttpProtocolOptions(); cp != nil {
		c.IdleTimeout = dur(cp.GetIdleTimeout(), 0)
		c.MaxConnectionDuration = dur(cp.GetMaxConnectionDuration(), 0)
		if v := cp.GetMaxRequestsPerConnection(); v != nil {
			c.MaxRequestsPerConnection = v.GetValue()
		}
	}
	for key, a := range pc.GetTypedExtensionProtocolOptions() {
		path := fmt.Sprintf("typed_extension_protocol_options[%q]", key)
		if key != httpProtocolOptionsKey {
			fe.add(path, "unsupported protocol options; only %s is supported", httpProtocolOptionsKey)
			continue
		}
		var po httpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&po); err != nil {
			fe.add(path, "cannot decode: %v", err)
			continue
		}
		switch {
		case po.GetExplicitHttpConfig() != nil:
			ex := po.GetExplicitHttpConfig()
			c.HTTP2 = ex.GetHttp2ProtocolOptions() != nil
			if ex.GetHttp3ProtocolOptions() != nil {
				fe.add(path+".explicit_http_config.http3_protocol_options", "HTTP/3 upstreams are not supported")
			}
		case po.GetUseDownstreamProtocolConfig() != nil:
			c.UseDownstreamProtocol = true
		case po.GetAutoConfig() != nil:
			fe.add(path+".auto_config", "ALPN auto protocol selection is not supported; use explicit_http_config or use_downstream_protocol_config")
		}
		if cp := po.GetCommonHttpProtocolOptions(); cp != nil {
			c.IdleTimeout = dur(cp.GetIdleTimeout(), c.IdleTimeout)
			c.MaxConnectionDuration = dur(cp.GetMaxConnectionDuration(), c.MaxConnectionDuration)
			if v := cp.GetMaxRequestsPerConnection(); v != nil {
				c.MaxRequestsPerConnection = v.GetValue()
			}
		}
		if len(po.GetHttpFilters()) > 0 {
			fe.add(path+".http_filters", "upstream HTTP filters are not supported")
		}
	}
	if pc.GetProtocolSelection() == clusterv3.Cluster_USE_DOWNSTREAM_PROTOCOL {
		c.UseDownstreamProtocol = true
	}
}

func compileBreakers(pc *clusterv3.Cluster, c *Cluster, fe *fieldErrors) {
	c.Breakers = Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}
	cb := pc.GetCircuitBreakers()
	if cb == nil {
		return
	}
	for i, t := range cb.GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue // HIGH priority routes are not produced by trellisd
		}
		c.Breakers.MaxConnections = u32(t.GetMaxConnections(), 1024)
		c.Breakers.MaxPendingRequests = u32(t.GetMaxPendingRequests(), 1024)
		c.Breakers.MaxRequests = u32(t.GetMaxRequests(), 1024)
		c.Breakers.MaxRetries = u32(t.GetMaxRetries(), 3)
		if t.GetRetryBudget() != nil {
			fe.add(fmt.Sprintf("circuit_breakers.thresholds[%d].retry_budget", i), "retry budgets are not supported; use max_retries")
		}
		break
	}
}

func compileOutlier(od *clusterv3.OutlierDetection, fe *fieldErrors) outlier.Config {
	cfg := outlier.Defaults()
	cfg.Consecutive5xx = u32(od.GetConsecutive_5Xx(), cfg.Consecutive5xx)
	cfg.EnforcingConsecutive5xx = u32(od.GetEnforcingConsecutive_5Xx(), cfg.EnforcingConsecutive5xx)
	cfg.ConsecutiveGatewayFailure = u32(od.GetConsecutiveGatewayFailure(), cfg.ConsecutiveGatewayFailure)
	cfg.EnforcingConsecutiveGatewayFailure = u32(od.GetEnforcingConsecutiveGatewayFailure(), cfg.EnforcingConsecutiveGatewayFailure)
	cfg.ConsecutiveLocalOriginFailure = u32(od.GetConsecutiveLocalOriginFailure(), cfg.ConsecutiveLocalOriginFailure)
	cfg.EnforcingLocalOriginFailure = u32(od.GetEnforcingConsecutiveLocalOriginFailure(), cfg.EnforcingLocalOriginFailure)
	cfg.SplitExternalLocalOriginErrors = od.GetSplitExternalLocalOriginErrors()
	cfg.Interval = dur(od.GetInterval(), cfg.Interval)
	cfg.BaseEjectionTime = dur(od.GetBaseEjectionTime(), cfg.BaseEjectionTime)
	cfg.MaxEjectionTime = dur(od.GetMaxEjectionTime(), cfg.MaxEjectionTime)
	cfg.MaxEjectionPercent = u32(od.GetMaxEjectionPercent(), cfg.MaxEjectionPercent)
	for name, v := range map[string]uint32{
		"enforcing_consecutive_5xx":                  cfg.EnforcingConsecutive5xx,
		"enforcing_consecutive_gateway_failure":      cfg.EnforcingConsecutiveGatewayFailure,
		"enforcing_consecutive_local_origin_failure": cfg.EnforcingLocalOriginFailure,
		"max_ejection_percent":                       cfg.MaxEjectionPercent,
	} {
		if v > 100 {
			fe.add("outlier_detection."+name, "must be a percentage within [0, 100], got %d", v)
		}
	}
	if cfg.Interval <= 0 {
		fe.add("outlier_detection.interval", "must be positive, got %v", cfg.Interval)
	}
	if cfg.BaseEjectionTime <= 0 {
		fe.add("outlier_detection.base_ejection_time", "must be positive, got %v", cfg.BaseEjectionTime)
	}
	// Success-rate and failure-percentage ejection are off unless their
	// enforcing percentages are raised above Envoy's defaults (100 and 0):
	// trellisd never sets them; refuse them rather than ignore them.
	if v := od.GetEnforcingFailurePercentage(); v != nil && v.GetValue() > 0 {
		fe.add("outlier_detection.enforcing_failure_percentage", "failure-percentage ejection is not supported")
	}
	if v := od.GetEnforcingSuccessRate(); v != nil && v.GetValue() > 0 {
		fe.add("outlier_detection.enforcing_success_rate", "success-rate ejection is not supported; set it to 0")
	}
	return cfg
}

func compileHealthCheck(hc *corev3.HealthCheck, fe *fieldErrors) healthcheck.Config {
	cfg := healthcheck.Config{
		Interval:           dur(hc.GetInterval(), 0),
		Timeout:            dur(hc.GetTimeout(), 0),
		UnhealthyThreshold: u32(hc.GetUnhealthyThreshold(), 1),
		HealthyThreshold:   u32(hc.GetHealthyThreshold(), 1),
	}
	if cfg.Interval <= 0 {
		fe.add("health_checks[0].interval", "must be positive")
	}
	if cfg.Timeout <= 0 {
		fe.add("health_checks[0].timeout", "must be positive")
	}
	switch {
	case hc.GetHttpHealthCheck() != nil:
		h := hc.GetHttpHealthCheck()
		cfg.HTTP = &healthcheck.HTTP{Host: h.GetHost(), Path: h.GetPath()}
		if h.GetPath() == "" {
			fe.add("health_checks[0].http_health_check.path", "must not be empty")
		}
		for _, r := range h.GetExpectedStatuses() {
			if r.GetStart() < 100 || r.GetEnd() > 600 || r.GetStart() >= r.GetEnd() {
				fe.add("health_checks[0].http_health_check.expected_statuses", "range [%d, %d) must be within [100, 600)", r.GetStart(), r.GetEnd())
			}
			cfg.HTTP.Expected = append(cfg.HTTP.Expected, healthcheck.StatusRange{Start: int(r.GetStart()), End: int(r.GetEnd())})
		}
	case hc.GetTcpHealthCheck() != nil:
		t := hc.GetTcpHealthCheck()
		cfg.TCP = &healthcheck.TCP{}
		if p := t.GetSend(); p != nil {
			cfg.TCP.Send = payload(p)
		}
		for _, p := range t.GetReceive() {
			cfg.TCP.Receive = append(cfg.TCP.Receive, payload(p))
		}
	default:
		fe.add("health_checks[0]", "only http_health_check and tcp_health_check are supported")
	}
	return cfg
}

func payload(p *corev3.HealthCheck_Payload) []byte {
	if t := p.GetText(); t != "" {
		// Envoy's text payload is hex.
		b := make([]byte, 0, len(t)/2)
		for i := 0; i+1 < len(t); i += 2 {
			b = append(b, unhex(t[i])<<4|unhex(t[i+1]))
		}
		return b
	}
	return p.GetBinary()
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

func compileMetadata(md *corev3.Metadata, c *Cluster, fe *fieldErrors) {
	istio := md.GetFilterMetadata()["istio"]
	if istio == nil {
		return
	}
	f := istio.GetFields()
	if sv := f["services"]; sv != nil {
		list := sv.GetListValue().GetValues()
		if len(list) > 0 {
			s := list[0].GetStructValue().GetFields()
			c.Service = &telemetry.Service{Host: str(s["host"]), Name: str(s["name"]), Namespace: str(s["namespace"])}
		}
	}
	c.Subset = str(f["subset"])
}

func str(v *structpb.Value) string {
	if v == nil {
		return ""
	}
	return v.GetStringValue()
}
