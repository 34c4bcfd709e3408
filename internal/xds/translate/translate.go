package translate

import (
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Output is the Envoy configuration for one proxy. Each slice is sorted by
// resource name and holds no duplicates. The messages may be shared with
// other Outputs (see Outbound) and must not be altered.
type Output struct {
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Secrets   []*tlsv3.Secret
}

// Translate is the whole configuration for in.Proxy: it equals
// Merge(Outbound(in), Inbound(in), &Output{Endpoints: Endpoints(in,
// Outbound(in).EDSClusterNames())}). It is pure: the same Input gives the
// same Output.
func Translate(in Input) *Output {
	out := Merge(Outbound(in), Inbound(in))
	out.Endpoints = Endpoints(in, out.EDSClusterNames())
	return out
}

// Outbound is the part of a proxy's configuration that does not depend on
// its IPs: outbound listeners, routes and clusters for a sidecar; all
// listeners, routes, clusters and secrets for a gateway; API listeners for a
// proxyless gRPC client. It reads the proxy only through
// NewOutboundProxy(in), so proxies with the same OutboundProxy get equal
// Outbound output and a server may compute it once per OutboundProxy.Key.
func Outbound(in Input) *Output {
	in.Proxy = NewOutboundProxy(in).Proxy()
	s := newScope(in)
	out := &Output{}
	switch {
	case s.proxy.Generator == GeneratorGRPC:
		out.Listeners, out.Routes = s.grpcListeners()
		out.Clusters = s.outboundClusters()
	case s.proxy.Type == RouterProxy:
		out.Listeners, out.Routes, out.Secrets = s.gatewayConfig()
		out.Clusters = append(s.outboundClusters(), passthroughClusters()...)
		out.Clusters = append(out.Clusters, s.sniDNATClusters()...)
	default:
		out.Listeners, out.Routes = s.sidecarOutbound()
		out.Clusters = append(s.outboundClusters(), passthroughClusters()...)
	}
	out.sort()
	return out
}

// Inbound is the proxy-specific part: for a sidecar, the 15006 listener and
// the inbound|PORT|| clusters of the services whose endpoints carry one of
// the proxy's IPs; for a proxyless gRPC server, its server-side listeners
// (GRPCInboundListenerPrefix). Gateways have none.
func Inbound(in Input) *Output {
	s := buildScope(in, false)
	out := &Output{}
	switch {
	case s.proxy.Generator == GeneratorGRPC:
		out.Listeners = s.grpcInbound()
	case s.proxy.Type == SidecarProxy:
		out.Listeners, out.Clusters = s.sidecarInbound()
	}
	out.sort()
	return out
}

// GeneratorGRPC is the GENERATOR node metadata of proxyless gRPC clients.
const GeneratorGRPC = "grpc"

// Merge combines outputs into a new one, sorted by name; when two hold a
// resource with the same name, the later one wins.
func Merge(outs ...*Output) *Output {
	m := &Output{}
	for _, o := range outs {
		if o == nil {
			continue
		}
		m.Clusters = append(m.Clusters, o.Clusters...)
		m.Endpoints = append(m.Endpoints, o.Endpoints...)
		m.Listeners = append(m.Listeners, o.Listeners...)
		m.Routes = append(m.Routes, o.Routes...)
		m.Secrets = append(m.Secrets, o.Secrets...)
	}
	m.sort()
	return m
}

// EDSClusterNames lists the clusters of type EDS, whose endpoints come
// from Endpoints, sorted.
func (o *Output) EDSClusterNames() []string {
	var names []string
	for _, c := range o.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			names = append(names, c.GetName())
		}
	}
	return names
}

func (o *Output) sort() {
	o.Clusters = dedupe(o.Clusters, (*clusterv3.Cluster).GetName)
	o.Endpoints = dedupe(o.Endpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName)
	o.Listeners = dedupe(o.Listeners, (*listenerv3.Listener).GetName)
	o.Routes = dedupe(o.Routes, (*routev3.RouteConfiguration).GetName)
	o.Secrets = dedupe(o.Secrets, (*tlsv3.Secret).GetName)
}

// dedupe sorts by name, keeping the last of equal names.
func dedupe[T any](list []T, name func(T) string) []T {
	if len(list) == 0 {
		return nil
	}
	sort.SliceStable(list, func(i, j int) bool { return name(list[i]) < name(list[j]) })
	out := list[:0]
	for i, v := range list {
		if i+1 < len(list) && name(list[i+1]) == name(v) {
			continue
		}
		out = append(out, v)
	}
	return out
}
