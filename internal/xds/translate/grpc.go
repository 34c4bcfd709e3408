package translate

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// grpcListeners serves proxyless gRPC clients (GENERATOR=grpc): for every
// visible service port an API listener named "HOST:PORT", the name
// grpc-go's xds:/// resolver asks for, whose connection manager takes route
// configuration "HOST:PORT" over RDS. Routes are the sidecar's, minus the
// per-route configs of filters grpc-go lacks (CORS).
func (s *scope) grpcListeners() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	var listeners []*listenerv3.Listener
	var routes []*routev3.RouteConfiguration
	for _, svc := range s.services {
		for _, port := range svc.Ports {
			name := svc.Hostname + ":" + u32(port.Number)
			h := &hcmv3.HttpConnectionManager{
				StatPrefix:     name,
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: name}},
				HttpFilters: []*hcmv3.HttpFilter{
					{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
					{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
				},
			}
			listeners = append(listeners, &listenerv3.Listener{
				Name:        name,
				ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(h)},
			})
			vh := &routev3.VirtualHost{Name: name, Domains: s.domains(svc, port.Number, map[string]bool{})}
			if vss := s.meshVirtualService(svc.Hostname, "http"); len(vss) > 0 {
				for _, vs := range vss {
					vh.Routes = append(vh.Routes, s.httpRoutes(vs, meshGateway, port.Number, svc)...)
				}
			} else {
				vh.Routes = []*routev3.Route{s.defaultRoute(svc, port.Number)}
			}
			for _, r := range vh.Routes {
				delete(r.TypedPerFilterConfig, CorsFilter)
				if len(r.TypedPerFilterConfig) == 0 {
					r.TypedPerFilterConfig = nil
				}
			}
			routes = append(routes, &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}})
		}
	}
	return listeners, routes
}

// GRPCInboundListenerPrefix starts the names of the server-side listeners
// of proxyless gRPC servers; their bootstrap sets
// server_listener_resource_name_template to GRPCInboundListenerPrefix+"%s",
// and grpc-go fills in the address it serves on.
const GRPCInboundListenerPrefix = "xds.istio.io/grpc/lds/inbound/"

// grpcInbound gives a proxyless gRPC server, for each port it serves (see
// localPorts), listeners named for the addresses it may listen on
// (0.0.0.0:PORT, [::]:PORT and each instance IP), each with one filter chain
// whose connection manager lets every RPC through to the application
// (non_forwarding_action), as grpc-go's xDS server requires.
func (s *scope) grpcInbound() []*listenerv3.Listener {
	var out []*listenerv3.Listener
	ports := s.localPorts()
	if ing := s.sidecarIngress(); ing != nil {
		ports = ing
	}
	for _, p := range ports {
		addrs := append([]string{"0.0.0.0", "::"}, s.proxy.IPs...)
		for _, a := range addrs {
			host := a
			if strings.Contains(a, ":") {
				host = "[" + a + "]"
			}
			name := GRPCInboundListenerPrefix + host + ":" + u32(p.port)
			h := &hcmv3.HttpConnectionManager{
				StatPrefix: "inbound_" + u32(p.port),
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
					Name: InboundClusterName(p.port),
					VirtualHosts: []*routev3.VirtualHost{{
						Name:    "inbound|grpc|" + u32(p.port),
						Domains: []string{"*"},
						Routes: []*routev3.Route{{
							Name:   "default",
							Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
							Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
						}},
					}},
				}},
				HttpFilters: []*hcmv3.HttpFilter{{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}},
			}
			out = append(out, &listenerv3.Listener{
				Name:             name,
				Address:          socketAddress(a, p.port),
				TrafficDirection: corev3.TrafficDirection_INBOUND,
				FilterChains: []*listenerv3.FilterChain{{
					Name:    InboundClusterName(p.port),
					Filters: []*listenerv3.Filter{{Name: HTTPConnectionManagerFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}},
				}},
			})
		}
	}
	return out
}
