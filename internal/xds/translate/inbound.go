package translate

import (
	"net"
	"sort"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// inboundPassthroughSource is the address the proxy connects to the local
// app from, so that iptables lets the connection through.
const inboundPassthroughSource = "127.0.0.6"

// inboundPort is one port the local workload serves.
type inboundPort struct {
	port     uint32 // the endpoint (container) port
	protocol registry.Protocol
	// addr and target are where the app listens: 127.0.0.1 and port unless
	// a Sidecar ingress listener's defaultEndpoint says otherwise.
	addr   string
	target uint32
	// services are the services with an endpoint on this port, sorted by
	// hostname; they become the inbound cluster's istio metadata so the
	// proxy reports destination_service on the server side.
	services []*registry.Service
}

// localPorts finds the ports the proxy's workload serves: the endpoint
// ports of every service endpoint whose address is one of the proxy's IPs.
// When two services disagree on a port's protocol, HTTP wins.
func (s *scope) localPorts() []inboundPort {
	ips := map[string]bool{}
	for _, ip := range s.proxy.IPs {
		ips[ip] = true
	}
	byPort := map[uint32]registry.Protocol{}
	svcs := map[uint32][]*registry.Service{}
	if s.in.Registry != nil && len(ips) > 0 {
		for _, svc := range s.in.Registry.Services {
			for _, ep := range s.in.Registry.Endpoints[svc.Hostname] {
				if !ips[ep.Address] {
					continue
				}
				sp := svc.Port(ep.ServicePort)
				if sp == nil {
					continue
				}
				prev, seen := byPort[ep.Port]
				if !seen || (!prev.IsHTTP() && sp.Protocol.IsHTTP()) {
					byPort[ep.Port] = sp.Protocol
				}
				if l := svcs[ep.Port]; len(l) == 0 || l[len(l)-1] != svc {
					svcs[ep.Port] = append(l, svc)
				}
			}
		}
	}
	out := make([]inboundPort, 0, len(byPort))
	for p, proto := range byPort {
		out = append(out, inboundPort{port: p, protocol: proto, addr: "127.0.0.1", target: p, services: svcs[p]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
}

// sidecarInbound builds virtualInbound (15006) with a filter chain per local
// port, the inbound|PORT|| clusters to the app on 127.0.0.1, and
// InboundPassthroughCluster for everything else.
func (s *scope) sidecarInbound() ([]*listenerv3.Listener, []*clusterv3.Cluster) {
	l := &listenerv3.Listener{
		Name:    VirtualInboundListener,
		Address: socketAddress("0.0.0.0", inboundCapturePort),
		// No use_original_dst: the original destination only selects a
		// filter chain here. Handing off by it would pass inbound traffic
		// to the outbound listener of the same port and loop.
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter(OriginalDstFilter),
			listenerFilter(TLSInspectorFilter),
			listenerFilter(HTTPInspectorFilter),
		},
	}
	var clusters []*clusterv3.Cluster
	ports := s.localPorts()
	if ing := s.sidecarIngress(); ing != nil {
		ports = ing
	}
	peers := s.peerAuthentication()
	authz := append(s.jwtFilters(), s.rbacFilters()...)
	for _, p := range ports {
		name := InboundClusterName(p.port)
		var fs []*listenerv3.Filter
		if p.protocol.IsHTTP() {
			fs = []*listenerv3.Filter{s.hcm(hcmOptions{statPrefix: "inbound_0.0.0.0_" + u32(p.port), inline: inboundRouteConfig(p.port, inboundOperation(p)), inbound: true, authz: authz})}
		} else {
			fs = append(s.networkRBACFilters(name), s.tcpProxy(name, []weightedName{{name: name}})...)
		}
		l.FilterChains = append(l.FilterChains, inboundChains(name, p.port, p.protocol.IsHTTP(), peers.forPort(p.port), fs...)...)
		c := staticCluster(name, p.addr, p.target)
		if len(p.services) > 0 {
			c.Metadata = istioMetadata(map[string]*structpb.Value{"services": servicesMetaValue(p.services)})
		}
		if p.protocol == registry.HTTP2 || p.protocol == registry.GRPC {
			applyPool(c, nil, p.protocol)
		}
		clusters = append(clusters, c)
	}
	l.FilterChains = append(l.FilterChains, filterChain("virtualInbound-catchall", nil,
		append(s.networkRBACFilters(InboundPassthroughCluster), s.tcpProxy(InboundPassthroughCluster, []weightedName{{name: InboundPassthroughCluster}})...)...))
	clusters = append(clusters, &clusterv3.Cluster{
		Name:                 InboundPassthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       dur(defaultConnectTimeout),
		UpstreamBindConfig:   &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: inboundPassthroughSource, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}},
	})
	return []*listenerv3.Listener{l}, clusters
}

// servicesMetaValue lists svcs as the cluster metadata "services" entries.
func servicesMetaValue(svcs []*registry.Service) *structpb.Value {
	vals := make([]*structpb.Value, 0, len(svcs))
	for _, svc := range svcs {
		vals = append(vals, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"host":      structpb.NewStringValue(svc.Hostname),
			"name":      structpb.NewStringValue(svc.Name),
			"namespace": structpb.NewStringValue(svc.Namespace),
		}}))
	}
	return structpb.NewListValue(&structpb.ListValue{Values: vals})
}

// inboundOperation names the spans of an inbound port, as Istio: the
// first service's host and the port, else the inbound cluster.
func inboundOperation(p inboundPort) string {
	if len(p.services) > 0 {
		return p.services[0].Hostname + ":" + u32(p.port) + "/*"
	}
	return InboundClusterName(p.port) + "/*"
}

func inboundRouteConfig(port uint32, operation string) *routev3.RouteConfiguration {
	name := InboundClusterName(port)
	return &routev3.RouteConfiguration{
		Name:             name,
		ValidateClusters: wrapBool(false),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "inbound|http|" + u32(port),
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:      "default",
				Match:     &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Decorator: &routev3.Decorator{Operation: operation},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
					Timeout:          dur(0),
				}},
			}},
		}},
	}
}

// sidecarIngress returns the ports of the Sidecar resource's ingress
// listeners, which replace the ports found from the registry, or nil when
// the proxy's Sidecar has none. defaultEndpoint is "IP:PORT" (0.0.0.0 means
// 127.0.0.1); empty means 127.0.0.1 on the listener port.
func (s *scope) sidecarIngress() []inboundPort {
	if s.sidecar == nil {
		return nil
	}
	sc := s.sidecar.Spec.(*networking.Sidecar)
	// As Istio does, an ingress port that is an endpoint port of the
	// workload's services serves those services (their cluster metadata
	// names destination_service at the destination).
	local := map[uint32][]*registry.Service{}
	for _, lp := range s.localPorts() {
		local[lp.port] = lp.services
	}
	var out []inboundPort
	seen := map[uint32]bool{}
	for _, ing := range sc.GetIngress() {
		n := ing.GetPort().GetNumber()
		if n == 0 || seen[n] {
			continue
		}
		seen[n] = true
		p := inboundPort{port: n, protocol: registry.ParseProtocol(ing.GetPort().GetProtocol(), ing.GetPort().GetName()), addr: "127.0.0.1", target: n, services: local[n]}
		if ep := ing.GetDefaultEndpoint(); ep != "" {
			if host, port, err := net.SplitHostPort(ep); err == nil {
				if v, err := strconv.ParseUint(port, 10, 32); err == nil && v > 0 {
					p.target = uint32(v)
				}
				if host != "" && host != "0.0.0.0" {
					p.addr = host
				}
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
}
