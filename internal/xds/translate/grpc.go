package translate

import (
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
