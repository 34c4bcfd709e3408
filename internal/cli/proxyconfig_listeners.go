package cli

import (
	"fmt"
	"io"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

func listenerPort(l *listenerv3.Listener) uint32 {
	return l.GetAddress().GetSocketAddress().GetPortValue()
}

// printListeners is `proxy-config listener`: one row per filter chain.
func printListeners(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var ls []*listenerv3.Listener
	for _, l := range d.listeners {
		sa := l.GetAddress().GetSocketAddress()
		if f.port != 0 && int(sa.GetPortValue()) != f.port || f.address != "" && sa.GetAddress() != f.address || f.name != "" && l.GetName() != f.name {
			continue
		}
		ls = append(ls, l)
	}
	if f.output != "short" {
		return printProtos(w, f.output, ls)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPORT\tMATCH\tDESTINATION")
	for _, l := range ls {
		sa := l.GetAddress().GetSocketAddress()
		chains := l.GetFilterChains()
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains, dc)
		}
		for _, fc := range chains {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", sa.GetAddress(), sa.GetPortValue(), describeMatch(fc.GetFilterChainMatch()), describeDestination(fc))
		}
	}
	return tw.Flush()
}

func describeMatch(m *listenerv3.FilterChainMatch) string {
	var parts []string
	if m.GetDestinationPort() != nil {
		parts = append(parts, fmt.Sprintf("Addr: *:%d", m.GetDestinationPort().GetValue()))
	}
	for _, p := range m.GetPrefixRanges() {
		parts = append(parts, fmt.Sprintf("Addr: %s/%d", p.GetAddressPrefix(), p.GetPrefixLen().GetValue()))
	}
	if len(m.GetServerNames()) > 0 {
		parts = append(parts, "SNI: "+strings.Join(m.GetServerNames(), ","))
	}
	if tp := m.GetTransportProtocol(); tp != "" {
		parts = append(parts, "Trans: "+tp)
	}
	if len(m.GetApplicationProtocols()) > 0 {
		parts = append(parts, "App: "+strings.Join(m.GetApplicationProtocols(), ","))
	}
	if len(parts) == 0 {
		return "ALL"
	}
	return strings.Join(parts, "; ")
}

func describeDestination(fc *listenerv3.FilterChain) string {
	for _, flt := range fc.GetFilters() {
		tc := flt.GetTypedConfig()
		if tc == nil {
			continue
		}
		var hcm hcmv3.HttpConnectionManager
		if tc.MessageIs(&hcm) && tc.UnmarshalTo(&hcm) == nil {
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				return "Route: " + n
			}
			var matches []string
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					matches = append(matches, describeRouteMatch(r.GetMatch()))
				}
			}
			return "Inline Route: " + strings.Join(matches, "; ")
		}
		var tcp tcpv3.TcpProxy
		if tc.MessageIs(&tcp) && tc.UnmarshalTo(&tcp) == nil {
			if c := tcp.GetCluster(); c != "" {
				switch c {
				case "PassthroughCluster", "InboundPassthroughCluster", "BlackHoleCluster":
					return c
				}
				return "Cluster: " + c
			}
			var ws []string
			for _, wc := range tcp.GetWeightedClusters().GetClusters() {
				ws = append(ws, fmt.Sprintf("%s(%d)", wc.GetName(), wc.GetWeight()))
			}
			return "WeightedClusters: " + strings.Join(ws, ",")
		}
	}
	return "Non-HTTP/Non-TCP"
}
