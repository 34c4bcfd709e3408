package translate

import (
	"net/netip"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// sidecarOutbound builds the sidecar's outbound side: the 15001 capture
// listener, one listener per HTTP port (0.0.0.0_PORT, RDS "PORT") and per
// TCP service port (VIP_PORT), and the route configurations named by port.
// A port of unknown protocol on a VIP is sniffed: HTTP goes through route
// configuration "PORT", anything else through tcp_proxy.
func (s *scope) sidecarOutbound() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	var listeners []*listenerv3.Listener
	httpPorts := map[uint32]bool{}                  // ports with an HTTP service: 0.0.0.0_PORT
	routedPorts := map[uint32][]*registry.Service{} // services with virtual hosts in route config PORT
	type l4 struct {
		addr    string
		port    uint32
		entries []l4Service
	}
	tcpByName := map[string]*l4{}
	for _, svc := range s.services {
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				httpPorts[port.Number] = true
				routedPorts[port.Number] = append(routedPorts[port.Number], svc)
				continue
			}
			if port.Protocol == registry.Unknown && len(svc.Addresses) > 0 {
				routedPorts[port.Number] = append(routedPorts[port.Number], svc)
			}
			if svc.Resolution == registry.ResolutionNone && len(svc.Addresses) == 0 && !isTLS(port.Protocol) {
				continue // reached through the passthrough
			}
			addrs := svc.Addresses
			if len(addrs) == 0 {
				addrs = []string{"0.0.0.0"}
			}
			for _, addr := range addrs {
				name := addr + "_" + u32(port.Number)
				if tcpByName[name] == nil {
					tcpByName[name] = &l4{addr: addr, port: port.Number}
				}
				tcpByName[name].entries = append(tcpByName[name].entries, l4Service{svc, port})
			}
		}
	}
	var routes []*routev3.RouteConfiguration
	ports := make([]uint32, 0, len(routedPorts))
	for p := range routedPorts {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, p := range ports {
		routes = append(routes, s.sidecarRouteConfig(p, routedPorts[p]))
		if !httpPorts[p] {
			continue
		}
		name := "0.0.0.0_" + u32(p)
		delete(tcpByName, name) // an HTTP port on 0.0.0.0 beats VIP-less TCP services
		l := listener(name, "0.0.0.0", p, false)
		l.FilterChains = []*listenerv3.FilterChain{filterChain(name, nil, s.hcm(hcmOptions{statPrefix: "outbound_0.0.0.0_" + u32(p), rds: u32(p)}))}
		listeners = append(listeners, l)
	}
	for name, e := range tcpByName {
		listeners = append(listeners, s.l4Listener(name, e.addr, e.port, e.entries))
	}
	listeners = s.addCIDRChains(listeners)
	listeners = append(listeners, s.virtualOutbound())
	return listeners, routes
}

// addCIDRChains sends TCP connections to addresses in a service's CIDRs
// (ServiceEntry addresses wider than one IP) to the service: a chain
// matched on prefix_ranges in 0.0.0.0_PORT, created (ending with the
// passthrough chain) when the port has no such listener yet. HTTP ports are
// routed by Host and are left alone.
func (s *scope) addCIDRChains(listeners []*listenerv3.Listener) []*listenerv3.Listener {
	byName := map[string]*listenerv3.Listener{}
	for _, l := range listeners {
		byName[l.GetName()] = l
	}
	for _, svc := range s.services {
		if len(svc.CIDRs) == 0 {
			continue
		}
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				continue
			}
			var ranges []*corev3.CidrRange
			for _, c := range svc.CIDRs {
				p, err := netip.ParsePrefix(c)
				if err != nil {
					continue
				}
				ranges = append(ranges, &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: u32v(uint32(p.Bits()))})
			}
			if len(ranges) == 0 {
				continue
			}
			name := "0.0.0.0_" + u32(port.Number)
			l := byName[name]
			if l == nil {
				l = listener(name, "0.0.0.0", port.Number, false)
				target := PassthroughCluster
				if !s.allowAny {
					target = BlackHoleCluster
				}
				l.FilterChains = []*listenerv3.FilterChain{filterChain(target, nil, s.tcpProxy(target, []weightedName{{name: target}})...)}
				byName[name] = l
				listeners = append(listeners, l)
			}
			chain := filterChain(svc.Hostname+"_"+u32(port.Number), &listenerv3.FilterChainMatch{PrefixRanges: ranges},
				s.tcpProxy(OutboundClusterName(port.Number, "", svc.Hostname), s.tcpRoute(svc, port))...)
			l.FilterChains = append([]*listenerv3.FilterChain{chain}, l.FilterChains...)
		}
	}
	return listeners
}

func (s *scope) virtualOutbound() *listenerv3.Listener {
	l := listener(VirtualOutboundListener, "0.0.0.0", outboundCapturePort, true)
	l.UseOriginalDst = wrapBool(true)
	l.ListenerFilters = []*listenerv3.ListenerFilter{listenerFilter(OriginalDstFilter)}
	target := PassthroughCluster
	if !s.allowAny {
		target = BlackHoleCluster
	}
	l.FilterChains = []*listenerv3.FilterChain{filterChain("PassthroughFilterChain", nil, s.tcpProxy(target, []weightedName{{name: target}})...)}
	return l
}

// sidecarRouteConfig is route configuration "PORT": a virtual host per
// service on the port, then the catch-all "allow_any" (or "block_all").
func (s *scope) sidecarRouteConfig(port uint32, services []*registry.Service) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: u32(port), ValidateClusters: wrapBool(false)}
	taken := map[string]bool{}
	for _, svc := range services {
		vh := &routev3.VirtualHost{
			Name:    svc.Hostname + ":" + u32(port),
			Domains: s.domains(svc, port, taken),
		}
		if len(vh.Domains) == 0 {
			continue
		}
		vh.IncludeRequestAttemptCount = true
		if vss := s.meshVirtualService(svc.Hostname, "http"); len(vss) > 0 {
			for _, vs := range vss {
				vh.Routes = append(vh.Routes, s.httpRoutes(vs, meshGateway, port, svc)...)
			}
		} else {
			vh.Routes = []*routev3.Route{s.defaultRoute(svc, port)}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	rc.VirtualHosts = append(rc.VirtualHosts, s.catchAllVirtualHost())
	return rc
}

func (s *scope) catchAllVirtualHost() *routev3.VirtualHost {
	if s.allowAny {
		return &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}, IncludeRequestAttemptCount: true, Routes: []*routev3.Route{{
			Name:  "allow_any",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster},
				Timeout:          dur(0),
			}},
		}}}
	}
	return &routev3.VirtualHost{Name: "block_all", Domains: []string{"*"}, IncludeRequestAttemptCount: true, Routes: []*routev3.Route{{
		Name:   "block_all",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
	}}}
}

// domains are the Host header values that reach svc on port, as Istio
// builds them: the FQDN, name.namespace(.svc) and, from the same
// namespace, the short name; the VIPs; each alone and with ":PORT".
// Domains already taken by an earlier virtual host are left out.
func (s *scope) domains(svc *registry.Service, port uint32, taken map[string]bool) []string {
	var names []string
	names = append(names, svc.Hostname)
	if svc.Name != svc.Hostname && svc.Name != "" {
		if svc.Namespace == s.proxy.Namespace {
			names = append(names, svc.Name)
		}
		names = append(names, svc.Name+"."+svc.Namespace, svc.Name+"."+svc.Namespace+".svc")
	}
	names = append(names, svc.Addresses...)
	var out []string
	for _, n := range names {
		for _, d := range []string{n, n + ":" + u32(port)} {
			if taken[d] {
				continue
			}
			taken[d] = true
			out = append(out, d)
		}
	}
	return out
}

// tcpRoute returns the clusters a TCP connection to svc:port goes to: the
// first tcp route of the service's mesh VirtualService whose match fits,
// else the service's own cluster.
func (s *scope) tcpRoute(svc *registry.Service, port registry.Port) []weightedName {
	for _, vs := range s.meshVirtualService(svc.Hostname, "tcp") {
		for _, r := range vs.spec.GetTcp() {
			if !s.l4Matches(r.GetMatch(), vs, meshGateway, port.Number) {
				continue
			}
			if out := s.l4Destinations(vs, r.GetRoute(), port.Number); len(out) > 0 {
				return out
			}
		}
	}
	return []weightedName{{name: OutboundClusterName(port.Number, "", svc.Hostname), weight: 100}}
}

func (s *scope) l4Matches(ms []*networking.L4MatchAttributes, vs *virtualService, gateway string, port uint32) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		gws := vs.gateways
		if len(m.GetGateways()) > 0 {
			gws = resolveGateways(m.GetGateways(), nsOf(vs.res))
		}
		if !contains(gws, gateway) {
			continue
		}
		if m.GetPort() != 0 && m.GetPort() != port {
			continue
		}
		if len(m.GetSourceLabels()) > 0 && !registry.Matches(m.GetSourceLabels(), s.proxy.Labels) {
			continue
		}
		if m.GetSourceNamespace() != "" && m.GetSourceNamespace() != s.proxy.Namespace {
			continue
		}
		return true
	}
	return false
}

func (s *scope) l4Destinations(vs *virtualService, dsts []*networking.RouteDestination, port uint32) []weightedName {
	var out []weightedName
	for _, d := range dsts {
		w := uint32(d.GetWeight())
		if w == 0 && len(dsts) > 1 {
			continue
		}
		if w == 0 {
			w = 100
		}
		out = append(out, weightedName{name: s.destinationCluster(vs, d.GetDestination(), port), weight: w})
	}
	return out
}

// destinationCluster names the cluster for a VirtualService destination: its
// host resolved in the VirtualService's namespace, its port (or the only
// port of the service, or the port being routed) and its subset.
func (s *scope) destinationCluster(vs *virtualService, d *networking.Destination, port uint32) string {
	host := s.resolve(d.GetHost(), nsOf(vs.res))
	p := d.GetPort().GetNumber()
	if p == 0 {
		if svc := s.anyService(host); svc != nil && len(svc.Ports) == 1 {
			p = svc.Ports[0].Number
		} else {
			p = port
		}
	}
	return OutboundClusterName(p, d.GetSubset(), host)
}

func (s *scope) resolve(host, ns string) string {
	return registry.ResolveHost(host, ns, s.mesh.DomainSuffix)
}

type l4Service struct {
	svc  *registry.Service
	port registry.Port
}

func isTLS(p registry.Protocol) bool { return p == registry.TLS || p == registry.HTTPS }

// l4Listener builds an outbound TCP/TLS listener. On a VIP the first
// service owns it: its VirtualService tls routes pick by SNI, then its tcp
// route (or own cluster) takes the rest. On 0.0.0.0 (services without a
// VIP) TLS services are told apart by SNI and anything else goes to the
// passthrough; for plain TCP the first service takes the port.
func (s *scope) l4Listener(name, addr string, port uint32, entries []l4Service) *listenerv3.Listener {
	l := listener(name, addr, port, false)
	seen := map[string]bool{}
	var chains []*listenerv3.FilterChain
	owners := entries[:1]
	wildTLS := addr == "0.0.0.0" && isTLS(entries[0].port.Protocol)
	if wildTLS {
		owners = entries
	}
	for _, e := range owners {
		chains = append(chains, s.tlsRouteChains(e.svc, e.port, seen)...)
		if wildTLS {
			if !seen[e.svc.Hostname] {
				seen[e.svc.Hostname] = true
				chains = append(chains, filterChain(e.svc.Hostname, &listenerv3.FilterChainMatch{ServerNames: []string{e.svc.Hostname}},
					s.tcpProxy(OutboundClusterName(port, "", e.svc.Hostname), s.tcpRoute(e.svc, e.port))...))
			}
			continue
		}
		if e.port.Protocol == registry.Unknown && addr != "0.0.0.0" {
			// Sniffed: HTTP/1.1 and h2c through the port's routes.
			chains = append(chains, filterChain(name+"-http", &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.1", "h2c"}},
				s.hcm(hcmOptions{statPrefix: "outbound_" + name, rds: u32(port)})))
		}
		chains = append(chains, filterChain(name, nil, s.tcpProxy(OutboundClusterName(port, "", e.svc.Hostname), s.tcpRoute(e.svc, e.port))...))
	}
	if wildTLS {
		target := PassthroughCluster
		if !s.allowAny {
			target = BlackHoleCluster
		}
		chains = append(chains, filterChain(target, nil, s.tcpProxy(target, []weightedName{{name: target}})...))
	}
	l.FilterChains = chains
	if len(seen) > 0 {
		l.ListenerFilters = append(l.ListenerFilters, listenerFilter(TLSInspectorFilter))
	}
	if entries[0].port.Protocol == registry.Unknown && addr != "0.0.0.0" {
		l.ListenerFilters = append(l.ListenerFilters, listenerFilter(HTTPInspectorFilter))
	}
	return l
}

// tlsRouteChains turns the mesh VirtualService tls[] routes of svc into
// filter chains matched on SNI; names already used are skipped.
func (s *scope) tlsRouteChains(svc *registry.Service, port registry.Port, seen map[string]bool) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	for _, vs := range s.meshVirtualService(svc.Hostname, "tls") {
		for _, tr := range vs.spec.GetTls() {
			for _, m := range tr.GetMatch() {
				if !s.l4Matches([]*networking.L4MatchAttributes{{Port: m.GetPort(), SourceLabels: m.GetSourceLabels(), Gateways: m.GetGateways(), SourceNamespace: m.GetSourceNamespace()}}, vs, meshGateway, port.Number) {
					continue
				}
				var snis []string
				for _, h := range m.GetSniHosts() {
					h = strings.ToLower(h)
					if !seen[h] {
						seen[h] = true
						snis = append(snis, h)
					}
				}
				if len(snis) == 0 {
					continue
				}
				sort.Strings(snis)
				dsts := s.l4Destinations(vs, tr.GetRoute(), port.Number)
				if len(dsts) == 0 {
					continue
				}
				out = append(out, filterChain("sni:"+strings.Join(snis, ","), &listenerv3.FilterChainMatch{ServerNames: snis}, s.tcpProxy(dsts[0].name, dsts)...))
			}
		}
	}
	return out
}

// meshVirtualService picks the one VirtualService that routes host for
// sidecars, for one kind of route ("http", "tcp" or "tls"), as Istio does: an
// exact host beats a wildcard, and among equals the first by
// namespace/name wins (Istio reports the others as conflicts, IST0109).
// Only VirtualServices with routes of that kind compete.
func (s *scope) meshVirtualService(host, kind string) []*virtualService {
	for _, vs := range s.virtualServicesFor(meshGateway, host) {
		n := 0
		switch kind {
		case "http":
			n = len(vs.spec.GetHttp())
		case "tcp":
			n = len(vs.spec.GetTcp())
		case "tls":
			n = len(vs.spec.GetTls())
		}
		if n > 0 {
			return []*virtualService{vs}
		}
	}
	return nil
}
