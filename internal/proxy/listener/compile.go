package listener

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	httpfilter "github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsterm"
	"github.com/trellis-mesh/trellis/internal/proxy/trace"
)

// Names of the network and listener filters trellis-proxy implements.
const (
	HCMFilter      = "envoy.filters.network.http_connection_manager"
	TCPProxyFilter = "envoy.filters.network.tcp_proxy"
	RBACFilter     = "envoy.filters.network.rbac"
	// StatsFilter is Istio's stats network filter, configuring the
	// standard TCP metrics of the tcp_proxy after it.
	StatsFilter      = "istio.stats"
	OriginalDstName  = "envoy.filters.listener.original_dst"
	TLSInspectorName = "envoy.filters.listener.tls_inspector"
	HTTPInspector    = "envoy.filters.listener.http_inspector"
)

// Listener is a compiled Listener. It is immutable.
type Listener struct {
	Name string
	// Address is the configured "ip:port".
	Address string
	IP      netip.Addr
	Port    uint32
	// Bind is false for virtual listeners that only receive hand-offs.
	Bind bool
	// UseOriginalDst (the listener's use_original_dst) hands a connection
	// to the listener for its original destination, when there is one.
	UseOriginalDst bool
	// RestoreDst (the original_dst listener filter, or use_original_dst)
	// makes the original destination the connection's local address for
	// filter-chain matching and ORIGINAL_DST clusters.
	RestoreDst bool
	Chains     []*Chain
	Default    *Chain
	// SniffTimeout bounds the wait for the first bytes (listener filter
	// timeout); on timeout matching continues without them.
	SniffTimeout time.Duration
	// Proto is the source proto (for config dumps).
	Proto *listenerv3.Listener
	// Stats are the listener.ADDRESS.* stats, named by the configured
	// address (nil when Compilers.Stats is nil).
	Stats *stats.ListenerStats

	ver *version // set by Server.Update; see retire.go
}

// Chain is a compiled FilterChain: its match and exactly one terminal
// network filter.
type Chain struct {
	Name string
	// match
	port       uint32 // 0: any
	prefixes   []netip.Prefix
	names      []string // server names, lower case
	transport  string
	alpn       []string
	sourceType listenerv3.FilterChainMatch_ConnectionSourceType
	srcPrefix  []netip.Prefix
	srcPorts   []uint32

	HTTP *httpconn.Config
	TCP  *tcpproxy.Config
	// RBAC are the network RBAC filters before the terminal one, in
	// order: a connection one of them denies is closed.
	RBAC []*httpfilter.RBACRules
	// TLS terminates downstream TLS before HTTP/TCP; nil for plain text.
	TLS *tlsterm.Context
}

// Compilers are the hooks Compile needs from the rest of the proxy.
type Compilers struct {
	Routes     httpconn.RouteSource
	AccessLogs httpconn.AccessLogCompiler
	// Tracing compiles an HCM's tracing field (client: an outbound
	// connection manager); nil rejects it.
	Tracing func(t *hcmv3.HttpConnectionManager_Tracing, client bool, path string) (*trace.Config, error)
	// TCPLogs compiles a tcp_proxy's access_log; nil rejects them.
	TCPLogs func(p *tcpv3.TcpProxy, path string) (tcpproxy.Observer, error)
	// Secrets holds the SDS secrets TLS termination reads at handshake
	// time; nil means an empty store (SDS-backed chains fail closed).
	Secrets *tlsterm.Store
	// Stats receives the listener.*, http.* and tcp.* stats of compiled
	// listeners; nil binds none. A recompiled listener keeps counting in
	// the same stats.
	Stats *stats.Store
}

// Compile compiles l. Errors name the field path (for the NACK).
func Compile(l *listenerv3.Listener, cc Compilers) (*Listener, error) {
	path := fmt.Sprintf("listener %q", l.GetName())
	out := &Listener{Name: l.GetName(), Bind: true, SniffTimeout: 5 * time.Second, Proto: l}
	if l.GetName() == "" {
		return nil, fmt.Errorf("listener.name: must not be empty")
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("%s.address.socket_address: required (pipes and internal listeners are not supported)", path)
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, fmt.Errorf("%s.address.socket_address.protocol: only TCP is supported", path)
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("%s.address.socket_address.address: %q is not an IP address", path, sa.GetAddress())
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok {
		return nil, fmt.Errorf("%s.address.socket_address.port_value: required", path)
	}
	out.IP, out.Port = ip, port.PortValue
	out.Address = net.JoinHostPort(ip.String(), strconv.Itoa(int(port.PortValue)))
	if cc.Stats != nil {
		out.Stats = stats.NewListenerStats(cc.Stats, out.Address)
	}
	if b := l.GetBindToPort(); b != nil {
		out.Bind = b.GetValue()
	}
	if l.GetDeprecatedV1().GetBindToPort() != nil {
		out.Bind = l.GetDeprecatedV1().GetBindToPort().GetValue()
	}
	out.UseOriginalDst = l.GetUseOriginalDst().GetValue()
	out.RestoreDst = out.UseOriginalDst
	if t := l.GetListenerFiltersTimeout(); t != nil {
		out.SniffTimeout = t.AsDuration()
	}
	for i, lf := range l.GetListenerFilters() {
		switch lf.GetName() {
		case OriginalDstName:
			out.RestoreDst = true
		case TLSInspectorName, HTTPInspector:
		default:
			return nil, fmt.Errorf("%s.listener_filters[%d].name: %q is not supported", path, i, lf.GetName())
		}
	}
	if l.GetUdpListenerConfig() != nil || l.GetApiListener() != nil {
		return nil, fmt.Errorf("%s: UDP and API listeners are not supported", path)
	}
	if l.GetFilterChainMatcher() != nil {
		return nil, fmt.Errorf("%s.filter_chain_matcher: not supported; use filter_chains[].filter_chain_match", path)
	}
	inbound := l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND || l.GetName() == "virtualInbound"
	for i, fc := range l.GetFilterChains() {
		c, err := compileChain(fc, cc, fmt.Sprintf("%s.filter_chains[%d]", path, i), inbound)
		if err != nil {
			return nil, err
		}
		out.Chains = append(out.Chains, c)
	}
	if dc := l.GetDefaultFilterChain(); dc != nil {
		c, err := compileChain(dc, cc, path+".default_filter_chain", inbound)
		if err != nil {
			return nil, err
		}
		out.Default = c
	}
	if len(out.Chains) == 0 && out.Default == nil {
		return nil, fmt.Errorf("%s.filter_chains: at least one filter chain (or default_filter_chain) is required", path)
	}
	if err := checkDuplicateMatches(out.Chains, path); err != nil {
		return nil, err
	}
	return out, nil
}

func compileChain(fc *listenerv3.FilterChain, cc Compilers, path string, inbound bool) (*Chain, error) {
	c := &Chain{Name: fc.GetName()}
	tc, err := tlsterm.CompileTransportSocket(path+".transport_socket", fc.GetTransportSocket(), cc.Secrets)
	if err != nil {
		return nil, err
	}
	c.TLS = tc
	m := fc.GetFilterChainMatch()
	if m != nil {
		c.port = m.GetDestinationPort().GetValue()
		for i, r := range m.GetPrefixRanges() {
			p, err := cidr(r)
			if err != nil {
				return nil, fmt.Errorf("%s.filter_chain_match.prefix_ranges[%d]: %w", path, i, err)
			}
			c.prefixes = append(c.prefixes, p)
		}
		for i, r := range m.GetSourcePrefixRanges() {
			p, err := cidr(r)
			if err != nil {
				return nil, fmt.Errorf("%s.filter_chain_match.source_prefix_ranges[%d]: %w", path, i, err)
			}
			c.srcPrefix = append(c.srcPrefix, p)
		}
		c.srcPorts = m.GetSourcePorts()
		c.sourceType = m.GetSourceType()
		for _, n := range m.GetServerNames() {
			c.names = append(c.names, strings.ToLower(n))
		}
		c.transport = m.GetTransportProtocol()
		c.alpn = m.GetApplicationProtocols()
		if m.GetAddressSuffix() != "" || m.GetSuffixLen() != nil || len(m.GetDirectSourcePrefixRanges()) > 0 {
			return nil, fmt.Errorf("%s.filter_chain_match: address_suffix, suffix_len and direct_source_prefix_ranges are not supported", path)
		}
	}
	if len(fc.GetFilters()) == 0 {
		return nil, fmt.Errorf("%s.filters: a terminal filter (http_connection_manager or tcp_proxy) is required", path)
	}
	var metrics *telemetry.Metrics
	for i, f := range fc.GetFilters() {
		fpath := fmt.Sprintf("%s.filters[%d]", path, i)
		last := i == len(fc.GetFilters())-1
		if f.GetName() != HCMFilter && f.GetName() != TCPProxyFilter && metrics != nil {
			return nil, fmt.Errorf("%s: %q follows %s; put the stats filter right before tcp_proxy", fpath, f.GetName(), StatsFilter)
		}
		switch f.GetName() {
		case StatsFilter:
			if last {
				return nil, fmt.Errorf("%s: %q must be followed by tcp_proxy", fpath, f.GetName())
			}
			m, err := telemetry.CompileStatsFilter(f.GetTypedConfig(), fpath+".typed_config")
			if err != nil {
				return nil, err
			}
			metrics = m
			continue
		case HCMFilter:
			if metrics != nil {
				return nil, fmt.Errorf("%s: the network stats filter before http_connection_manager is not supported; put istio.stats in its http_filters", fpath)
			}
			var h hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
				return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
			}
			cfg, err := httpconn.Compile(&h, cc.Routes, cc.AccessLogs, fpath+".typed_config")
			if err != nil {
				return nil, err
			}
			cfg.Inbound = inbound
			if t := h.GetTracing(); t != nil {
				if cc.Tracing == nil {
					return nil, fmt.Errorf("%s.typed_config.tracing: no tracer is available", fpath)
				}
				if cfg.Tracing, err = cc.Tracing(t, !inbound, fpath+".typed_config.tracing"); err != nil {
					return nil, err
				}
			}
			if cc.Stats != nil {
				cfg.Stats = stats.NewHTTPStats(cc.Stats, cfg.StatPrefix)
			}
			c.HTTP = cfg
		case TCPProxyFilter:
			var t tcpv3.TcpProxy
			if err := f.GetTypedConfig().UnmarshalTo(&t); err != nil {
				return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
			}
			cfg, err := tcpproxy.Compile(&t, cc.TCPLogs, fpath+".typed_config")
			if err != nil {
				return nil, err
			}
			cfg.Inbound = inbound
			cfg.Metrics = metrics
			if cc.Stats != nil {
				cfg.Stats = stats.NewTCPStats(cc.Stats, cfg.StatPrefix)
			}
			c.TCP = cfg
		case RBACFilter:
			var r netrbacv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&r); err != nil {
				return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
			}
			rules, err := httpfilter.CompileNetworkRBAC(&r, fpath+".typed_config")
			if err != nil {
				return nil, err
			}
			if last {
				return nil, fmt.Errorf("%s: %q must be followed by a terminal filter (http_connection_manager or tcp_proxy)", fpath, f.GetName())
			}
			if rules != nil {
				c.RBAC = append(c.RBAC, rules)
			}
			continue
		default:
			return nil, fmt.Errorf("%s.name: network filter %q is not supported", fpath, f.GetName())
		}
		if !last {
			return nil, fmt.Errorf("%s: %q is terminal and must be the last filter", fpath, f.GetName())
		}
	}
	return c, nil
}

func cidr(r *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address_prefix %q is not an IP address", r.GetAddressPrefix())
	}
	bits := a.BitLen()
	if pl := r.GetPrefixLen(); pl != nil {
		bits = int(pl.GetValue())
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix_len %d: %w", bits, err)
	}
	return p, nil
}

// checkDuplicateMatches rejects two chains with identical matches, as
// Envoy does ("multiple filter chains with the same matching rules").
func checkDuplicateMatches(chains []*Chain, path string) error {
	seen := map[string]int{}
	for i, c := range chains {
		k := fmt.Sprint(c.port, c.prefixes, c.names, c.transport, c.alpn, c.sourceType, c.srcPrefix, c.srcPorts)
		if j, dup := seen[k]; dup {
			return fmt.Errorf("%s.filter_chains[%d]: same filter_chain_match as filter_chains[%d]", path, i, j)
		}
		seen[k] = i
	}
	return nil
}
