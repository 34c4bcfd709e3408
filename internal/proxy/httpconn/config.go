package httpconn

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"github.com/trellis-mesh/trellis/internal/proxy/trace"
)

// RouteTable holds one named route configuration, swapped atomically when
// RDS updates it. The zero value has no routes (every request is 404 NR).
type RouteTable struct {
	Name string
	p    atomic.Pointer[route.Config]
}

// Load returns the current routes (nil if none arrived yet).
func (t *RouteTable) Load() *route.Config { return t.p.Load() }

// Store publishes new routes.
func (t *RouteTable) Store(c *route.Config) { t.p.Store(c) }

// RouteSource returns the table for an RDS route configuration name,
// creating an empty one if RDS has not delivered it yet.
type RouteSource interface {
	Table(name string) *RouteTable
}

// AccessLogCompiler turns an HCM's access_log list into an observer; nil
// when the proxy has no access log support wired in.
type AccessLogCompiler func(logs []*accesslogv3.AccessLog, path string) (Observer, error)

// Config is a compiled HttpConnectionManager. It is immutable.
type Config struct {
	StatPrefix string
	Routes     *RouteTable
	// Filters is the compiled http_filters chain, run in order; the router
	// ends it.
	Filters filter.Chain
	// Metrics is the istio.stats filter's config: how the standard
	// metrics of this connection manager's requests differ from Istio's
	// (nil: they do not).
	Metrics *telemetry.Metrics
	// StreamIdleTimeout bounds the wait for request bytes (default 5 min);
	// IdleTimeout closes idle keep-alive connections (default 1 h).
	StreamIdleTimeout, IdleTimeout, RequestTimeout time.Duration
	// RequestHeadersTimeout, when set, bounds the time from a request
	// head's first byte to its last (Envoy's request_headers_timeout): a
	// client trickling its head (slowloris) gets 408 and is closed. Zero,
	// the default as in Envoy, leaves only StreamIdleTimeout.
	RequestHeadersTimeout time.Duration
	// MaxRequestHeadersBytes bounds a request's header list (Envoy's
	// max_request_headers_kb, default 60 KiB) and MaxHeadersCount its
	// number of fields (common_http_protocol_options.max_headers_count,
	// default 100): HTTP/1.1 counts the head's bytes and answers 431;
	// HTTP/2 advertises SETTINGS_MAX_HEADER_LIST_SIZE, answers 431 to a
	// list past it or with too many fields, and ends the connection with
	// GOAWAY when a peer keeps sending header blocks far past it.
	MaxRequestHeadersBytes, MaxHeadersCount int
	// Codec is the HCM's codec_type: AUTO (the zero value) tells HTTP/2
	// by its connection preface or ALPN; HTTP1 and HTTP2 serve only that
	// protocol, so an HTTP2 connection manager closes a connection that
	// does not open with the HTTP/2 preface (RFC 9113 3.4).
	Codec             hcmv3.HttpConnectionManager_CodecType
	UseRemoteAddress  bool
	XffNumTrustedHops int
	SkipXffAppend     bool
	GenerateRequestID bool
	// Upgrades are the enabled upgrade types (lower case, e.g. websocket).
	Upgrades []string
	// ServerName, when set, is written as the server header of responses
	// (Envoy's server_name with OVERWRITE).
	ServerName string
	serverName []byte
	// Log is the access log observer (nil: none).
	Log Observer
	// NormalizePath removes dot segments (RFC 3986 5.2.4) and MergeSlashes
	// collapses repeated slashes before routing, as Envoy's normalize_path
	// and merge_slashes do.
	NormalizePath, MergeSlashes bool
	// Inbound marks the server side's connection manager (set by the
	// listener compiler from traffic_direction).
	Inbound bool
	// Stats are the http.STAT_PREFIX.* stats (nil: none; bound by the
	// listener compiler).
	Stats *stats.HTTPStats
	// Tracing is the compiled tracing field (nil: no tracing, and the
	// request path does no tracing work; set by the listener compiler).
	Tracing *trace.Config
}

// Compile compiles an HCM. routes resolves RDS names; logs compiles
// access_log (may be nil, then access_log entries are rejected).
func Compile(h *hcmv3.HttpConnectionManager, routes RouteSource, logs AccessLogCompiler, path string) (*Config, error) {
	c := &Config{
		StatPrefix:        h.GetStatPrefix(),
		StreamIdleTimeout: 5 * time.Minute,
		IdleTimeout:       time.Hour,
		UseRemoteAddress:  h.GetUseRemoteAddress().GetValue(),
		XffNumTrustedHops: int(h.GetXffNumTrustedHops()),
		SkipXffAppend:     h.GetSkipXffAppend(),
		GenerateRequestID: h.GetGenerateRequestId() == nil || h.GetGenerateRequestId().GetValue(),
		ServerName:        h.GetServerName(),
		serverName:        []byte(h.GetServerName()),
		NormalizePath:     h.GetNormalizePath().GetValue(),
		MergeSlashes:      h.GetMergeSlashes(),

		MaxRequestHeadersBytes: http1.MaxHeaderBytes,
		MaxHeadersCount:        http1.MaxHeaders,
	}
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		// Envoy's bounds: more than 0, at most 8192 (8 MiB).
		if kb.GetValue() == 0 || kb.GetValue() > 8192 {
			return nil, fmt.Errorf("%s.max_request_headers_kb: %d is out of range; use 1 to 8192", path, kb.GetValue())
		}
		c.MaxRequestHeadersBytes = int(kb.GetValue()) << 10
	}
	if n := h.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); n != nil {
		if n.GetValue() == 0 {
			return nil, fmt.Errorf("%s.common_http_protocol_options.max_headers_count: must be at least 1", path)
		}
		c.MaxHeadersCount = int(n.GetValue())
	}
	if a := h.GetPathWithEscapedSlashesAction(); a != hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT && a != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		return nil, fmt.Errorf("%s.path_with_escaped_slashes_action: %v is not supported; use KEEP_UNCHANGED", path, a)
	}
	switch c.Codec = h.GetCodecType(); c.Codec {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1, hcmv3.HttpConnectionManager_HTTP2:
	default:
		return nil, fmt.Errorf("%s.codec_type: %v is not supported; use AUTO, HTTP1 or HTTP2", path, h.GetCodecType())
	}
	if t := h.GetStreamIdleTimeout(); t != nil {
		c.StreamIdleTimeout = t.AsDuration()
	}
	if t := h.GetRequestTimeout(); t != nil {
		c.RequestTimeout = t.AsDuration()
	}
	if t := h.GetRequestHeadersTimeout(); t != nil {
		if d := t.AsDuration(); d < 0 {
			return nil, fmt.Errorf("%s.request_headers_timeout: must not be negative", path)
		}
		c.RequestHeadersTimeout = t.AsDuration()
	}
	if t := h.GetCommonHttpProtocolOptions().GetIdleTimeout(); t != nil {
		c.IdleTimeout = t.AsDuration()
	}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		name := rs.Rds.GetRouteConfigName()
		if name == "" {
			return nil, fmt.Errorf("%s.rds.route_config_name: must not be empty", path)
		}
		c.Routes = routes.Table(name)
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rc, err := route.Compile(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("%s.route_config.%w", path, err)
		}
		c.Routes = &RouteTable{Name: rs.RouteConfig.GetName()}
		c.Routes.Store(rc)
	default:
		return nil, fmt.Errorf("%s: set rds or route_config (scoped_routes is not supported)", path)
	}
	var err error
	if c.Filters, err = filter.CompileChain(h.GetHttpFilters(), path+".http_filters"); err != nil {
		return nil, err
	}
	for i, f := range h.GetHttpFilters() {
		if !filter.IsStatsFilter(f) {
			continue
		}
		fpath := fmt.Sprintf("%s.http_filters[%d]", path, i)
		if c.Metrics != nil {
			return nil, fmt.Errorf("%s: a second stats filter; keep one", fpath)
		}
		if c.Metrics, err = telemetry.CompileStatsFilter(f.GetTypedConfig(), fpath+".typed_config"); err != nil {
			return nil, err
		}
	}
	for i, u := range h.GetUpgradeConfigs() {
		if u.GetEnabled() != nil && !u.GetEnabled().GetValue() {
			continue
		}
		t := strings.ToLower(u.GetUpgradeType())
		if t == "" {
			return nil, fmt.Errorf("%s.upgrade_configs[%d].upgrade_type: must not be empty", path, i)
		}
		if len(u.GetFilters()) > 0 {
			return nil, fmt.Errorf("%s.upgrade_configs[%d].filters: per-upgrade filter chains are not supported", path, i)
		}
		c.Upgrades = append(c.Upgrades, t)
	}
	if len(h.GetAccessLog()) > 0 {
		if logs == nil {
			return nil, fmt.Errorf("%s.access_log: no access logger is available", path)
		}
		o, err := logs(h.GetAccessLog(), path+".access_log")
		if err != nil {
			return nil, err
		}
		c.Log = o
	}
	return c, nil
}

// upgradeAllowed reports whether the upgrade type is enabled on the HCM or
// the route.
func (c *Config) upgradeAllowed(t []byte, r *route.Route) bool {
	for _, u := range c.Upgrades {
		if strings.EqualFold(u, string(t)) {
			return true
		}
	}
	if r != nil {
		for _, u := range r.Upgrades {
			if strings.EqualFold(u, string(t)) {
				return true
			}
		}
	}
	return false
}
