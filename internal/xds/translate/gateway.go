package translate

import (
	"encoding/json"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// SDSPrefix starts the name of a secret taken from a Kubernetes Secret.
const SDSPrefix = "kubernetes://"

// gatewayServer is one server of one selected Gateway.
type gatewayServer struct {
	key    string // "ns/name" of the Gateway
	ns     string
	name   string
	server *networking.Server
	proto  registry.Protocol
}

// autoPassthrough is an east-west gateway's server (see eastwest.go).
func (g gatewayServer) autoPassthrough() bool {
	return g.proto == registry.TLS && g.server.GetTls().GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH
}

func (g gatewayServer) terminatesTLS() bool {
	m := g.server.GetTls().GetMode()
	return (g.proto == registry.HTTPS || g.proto == registry.TLS) && g.server.GetTls() != nil &&
		(m == networking.ServerTLSSettings_SIMPLE || m == networking.ServerTLSSettings_MUTUAL || m == networking.ServerTLSSettings_ISTIO_MUTUAL)
}

// gatewayConfig builds a router's listeners (one per server port, bound on
// 0.0.0.0), route configurations ("http.PORT" for plain HTTP, one per HTTPS
// server) and the secrets its servers name.
func (s *scope) gatewayConfig() ([]*listenerv3.Listener, []*routev3.RouteConfiguration, []*tlsv3.Secret) {
	type bindPort struct {
		bind string
		port uint32
	}
	byPort := map[bindPort][]gatewayServer{}
	for _, gs := range s.gatewayServers() {
		k := bindPort{bind: gs.server.GetBind(), port: gs.server.GetPort().GetNumber()}
		byPort[k] = append(byPort[k], gs)
	}
	keys := make([]bindPort, 0, len(byPort))
	for k := range byPort {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].port != keys[j].port {
			return keys[i].port < keys[j].port
		}
		return keys[i].bind < keys[j].bind
	})
	var listeners []*listenerv3.Listener
	var routes []*routev3.RouteConfiguration
	secrets := map[string]*tlsv3.Secret{}
	authz := append(s.jwtFilters(), s.rbacFilters()...)
	for _, k := range keys {
		servers, port := byPort[k], k.port
		addr, rdsSuffix := "0.0.0.0", ""
		if k.bind != "" {
			addr, rdsSuffix = k.bind, "."+k.bind
		}
		name := addr + "_" + u32(port)
		l := listener(name, addr, port, true)
		var plainHTTP []gatewayServer
		for _, gs := range servers {
			switch {
			case gs.terminatesTLS():
				rcName := "https." + u32(port) + "." + gs.server.GetPort().GetName() + "." + gs.name + "." + gs.ns + rdsSuffix
				match := &listenerv3.FilterChainMatch{ServerNames: sniNames(gs.server.GetHosts())}
				fc := filterChain(rcName, match, s.hcm(hcmOptions{statPrefix: "outbound_" + name, rds: rcName, edge: true, authz: authz}))
				fc.TransportSocket = s.downstreamTLS(gs, secrets)
				l.FilterChains = append(l.FilterChains, fc)
				routes = append(routes, s.gatewayRouteConfig(rcName, port, []gatewayServer{gs}))
			case gs.proto.IsHTTP():
				plainHTTP = append(plainHTTP, gs)
			case gs.autoPassthrough():
				l.FilterChains = append(l.FilterChains, s.autoPassthroughChains(gs)...)
			case gs.proto == registry.HTTPS || gs.proto == registry.TLS:
				l.FilterChains = append(l.FilterChains, s.gatewayTLSPassthrough(gs, port)...)
			default:
				if fc := s.gatewayTCP(gs, port); fc != nil {
					l.FilterChains = append(l.FilterChains, fc)
				}
			}
		}
		if len(plainHTTP) > 0 {
			rcName := "http." + u32(port) + rdsSuffix
			l.FilterChains = append(l.FilterChains, filterChain(rcName, nil, s.hcm(hcmOptions{statPrefix: "outbound_" + name, rds: rcName, edge: true, authz: authz})))
			routes = append(routes, s.gatewayRouteConfig(rcName, port, plainHTTP))
		}
		if len(l.FilterChains) == 0 {
			continue
		}
		for _, fc := range l.FilterChains {
			if fc.GetFilterChainMatch().GetServerNames() != nil || fc.TransportSocket != nil {
				l.ListenerFilters = []*listenerv3.ListenerFilter{listenerFilter(TLSInspectorFilter)}
				break
			}
		}
		listeners = append(listeners, l)
	}
	var out []*tlsv3.Secret
	for _, sec := range secrets {
		out = append(out, sec)
	}
	return listeners, routes, out
}

// gatewayServers are the servers (with a port) of the gateways selected
// for the proxy, in Gateway then server order.
func (s *scope) gatewayServers() []gatewayServer {
	var out []gatewayServer
	for _, r := range s.gateways {
		gw := r.Spec.(*networking.Gateway)
		for _, srv := range gw.GetServers() {
			if srv.GetPort().GetNumber() == 0 {
				continue
			}
			out = append(out, gatewayServer{
				key: nsOf(r) + "/" + r.Name, ns: nsOf(r), name: r.Name, server: srv,
				proto: registry.ParseProtocol(srv.GetPort().GetProtocol(), srv.GetPort().GetName()),
			})
		}
	}
	return out
}

// serverHost splits a Gateway server host "ns/host" (no slash means any
// namespace).
func serverHost(h string) (ns, host string) {
	if i := strings.IndexByte(h, '/'); i >= 0 {
		return h[:i], strings.ToLower(h[i+1:])
	}
	return "*", strings.ToLower(h)
}

func sniNames(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		_, host := serverHost(h)
		if host == "*" {
			return nil
		}
		out = append(out, host)
	}
	sort.Strings(out)
	return out
}

// gatewayHost returns the virtual host name a VirtualService host gets
// under a server host, or "" when the server does not admit it: the more
// specific of the two when one covers the other.
func gatewayHost(gs gatewayServer, vsNS, vsHost string) string {
	for _, h := range gs.server.GetHosts() {
		ns, host := serverHost(h)
		switch ns {
		case "*":
		case ".":
			if vsNS != gs.ns {
				continue
			}
		default:
			if vsNS != ns {
				continue
			}
		}
		if registry.HostMatches(host, vsHost) {
			return vsHost
		}
		if registry.HostMatches(vsHost, host) {
			return host
		}
	}
	return ""
}

// gatewayRouteConfig holds one virtual host per host that a bound
// VirtualService routes through these servers; routes of several
// VirtualServices for one host are merged in namespace/name order. With no
// host at all, the "blackhole" virtual host answers 404.
func (s *scope) gatewayRouteConfig(name string, port uint32, servers []gatewayServer) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapBool(false)}
	vhosts := map[string]*routev3.VirtualHost{}
	for _, gs := range servers {
		for _, vs := range s.virtualServices {
			if len(vs.spec.GetHttp()) == 0 || !vsBindsGateway(vs, gs.key) {
				continue
			}
			for _, h := range vs.hosts {
				host := gatewayHost(gs, nsOf(vs.res), h)
				if host == "" {
					continue
				}
				vh := vhosts[host]
				if vh == nil {
					vh = &routev3.VirtualHost{Name: host + ":" + u32(port), IncludeRequestAttemptCount: true}
					if host == "*" {
						vh.Domains = []string{"*"}
					} else {
						vh.Domains = []string{host, host + ":" + u32(port)}
					}
					if gs.server.GetTls().GetHttpsRedirect() {
						vh.RequireTls = routev3.VirtualHost_ALL
					}
					vhosts[host] = vh
				}
				vh.Routes = append(vh.Routes, s.httpRoutes(vs, gs.key, port, nil)...)
			}
		}
	}
	for _, k := range sortedKeys(vhosts) {
		rc.VirtualHosts = append(rc.VirtualHosts, vhosts[k])
	}
	if len(rc.VirtualHosts) == 0 {
		rc.VirtualHosts = []*routev3.VirtualHost{{Name: "blackhole:" + u32(port), Domains: []string{"*"}}}
	}
	return rc
}

// vsBindsGateway reports whether the VirtualService, or any of its route
// matches, names the gateway.
func vsBindsGateway(vs *virtualService, key string) bool {
	if contains(vs.gateways, key) {
		return true
	}
	for _, hr := range vs.spec.GetHttp() {
		for _, m := range hr.GetMatch() {
			if contains(resolveGateways(m.GetGateways(), nsOf(vs.res)), key) && len(m.GetGateways()) > 0 {
				return true
			}
		}
	}
	return false
}

func (s *scope) downstreamTLS(gs gatewayServer, secrets map[string]*tlsv3.Secret) *corev3.TransportSocket {
	t := gs.server.GetTls()
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}}
	cred := t.GetCredentialName()
	if cred == "" && len(t.GetCredentialNames()) > 0 {
		cred = t.GetCredentialNames()[0]
	}
	if cred != "" {
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: SDSPrefix + cred, SdsConfig: adsSource()}}
		if c := s.credential(cred, gs.ns); c != nil {
			secrets[SDSPrefix+cred] = &tlsv3.Secret{Name: SDSPrefix + cred, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.CertChain}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.PrivateKey}},
			}}}
			// Istio's convention for the client CA: the Secret's ca.crt,
			// else a separate Secret NAME-cacert.
			ca := c.CACert
			if len(ca) == 0 {
				if cc := s.caCredential(cred+"-cacert", gs.ns); cc != nil {
					ca = cc.CACert
				}
			}
			if t.GetMode() == networking.ServerTLSSettings_MUTUAL && len(ca) > 0 {
				secrets[SDSPrefix+cred+"-cacert"] = &tlsv3.Secret{Name: SDSPrefix + cred + "-cacert", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca}},
				}}}
			}
		}
		if t.GetMode() == networking.ServerTLSSettings_MUTUAL {
			ctx.RequireClientCertificate = wrapBool(true)
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SDSPrefix + cred + "-cacert", SdsConfig: adsSource()},
			}
		}
	}
	// ISTIO_MUTUAL: the gateway's own workload certificate, clients
	// verified against the mesh's trust bundle (as Istio's gateways).
	if t.GetMode() == networking.ServerTLSSettings_ISTIO_MUTUAL {
		ctx.RequireClientCertificate = wrapBool(true)
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsRef(WorkloadCertSecret)}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: sdsRef(RootCertSecret),
		}
	}
	if v := tlsVersion(t.GetMinProtocolVersion()); v != tlsv3.TlsParameters_TLS_AUTO {
		ctx.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: v}
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

func tlsVersion(v networking.ServerTLSSettings_TLSProtocol) tlsv3.TlsParameters_TlsProtocol {
	switch v {
	case networking.ServerTLSSettings_TLSV1_0:
		return tlsv3.TlsParameters_TLSv1_0
	case networking.ServerTLSSettings_TLSV1_1:
		return tlsv3.TlsParameters_TLSv1_1
	case networking.ServerTLSSettings_TLSV1_2:
		return tlsv3.TlsParameters_TLSv1_2
	case networking.ServerTLSSettings_TLSV1_3:
		return tlsv3.TlsParameters_TLSv1_3
	}
	return tlsv3.TlsParameters_TLS_AUTO
}

// credential finds a gateway credential: in.Credentials first, then a
// Kubernetes TLS Secret among the config's Kubernetes objects (local mode
// reads them from the config directory), in the proxy's namespace, then in
// the Gateway's.
func (s *scope) credential(name, gatewayNS string) *Credential {
	for _, ns := range []string{s.proxy.Namespace, gatewayNS} {
		if c := s.in.Credentials[ns+"/"+name]; c != nil {
			return c
		}
	}
	for _, ns := range []string{s.proxy.Namespace, gatewayNS} {
		if c := kubeSecret(s.in.Config, ns, name); c != nil {
			return c
		}
	}
	return nil
}

// caCredential finds a CA-only credential (Istio's NAME-cacert Secret,
// key ca.crt or cacert) as credential finds a key pair.
func (s *scope) caCredential(name, gatewayNS string) *Credential {
	for _, ns := range []string{s.proxy.Namespace, gatewayNS} {
		if c := s.in.Credentials[ns+"/"+name]; c != nil && len(c.CACert) > 0 {
			return c
		}
	}
	for _, ns := range []string{s.proxy.Namespace, gatewayNS} {
		if c := kubeSecretData(s.in.Config, ns, name); c != nil && len(c.CACert) > 0 {
			return c
		}
	}
	return nil
}

// kubeSecret reads the Kubernetes Secret ns/name (keys tls.crt, tls.key,
// ca.crt, in data or stringData) from the config's Kubernetes objects.
func kubeSecret(cfg *config.Snapshot, ns, name string) *Credential {
	c := kubeSecretData(cfg, ns, name)
	if c == nil || len(c.CertChain) == 0 || len(c.PrivateKey) == 0 {
		return nil
	}
	return c
}

// kubeSecretData reads whatever TLS material the Secret ns/name holds:
// tls.crt/tls.key/ca.crt, or the generic cert/key/cacert.
func kubeSecretData(cfg *config.Snapshot, ns, name string) *Credential {
	for _, o := range cfg.KubeObjects() {
		if o.Kind != "Secret" || o.Name != name || (o.Namespace != ns && !(o.Namespace == "" && ns == "default")) {
			continue
		}
		var sec struct {
			Data       map[string][]byte `json:"data"`
			StringData map[string]string `json:"stringData"`
		}
		if err := json.Unmarshal(o.Raw, &sec); err != nil {
			return nil
		}
		get := func(k string) []byte {
			if v, ok := sec.StringData[k]; ok {
				return []byte(v)
			}
			return sec.Data[k]
		}
		pick := func(keys ...string) []byte {
			for _, k := range keys {
				if v := get(k); len(v) > 0 {
					return v
				}
			}
			return nil
		}
		return &Credential{CertChain: pick("tls.crt", "cert"), PrivateKey: pick("tls.key", "key"), CACert: pick("ca.crt", "cacert")}
	}
	return nil
}

// gatewayTLSPassthrough gives one filter chain per tls route of a bound
// VirtualService, matched on SNI and forwarded without termination.
func (s *scope) gatewayTLSPassthrough(gs gatewayServer, port uint32) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	seen := map[string]bool{}
	for _, vs := range s.virtualServices {
		if !contains(vs.gateways, gs.key) {
			continue
		}
		for _, tr := range vs.spec.GetTls() {
			for _, m := range tr.GetMatch() {
				gws := vs.gateways
				if len(m.GetGateways()) > 0 {
					gws = resolveGateways(m.GetGateways(), nsOf(vs.res))
				}
				if !contains(gws, gs.key) || (m.GetPort() != 0 && m.GetPort() != port) {
					continue
				}
				var snis []string
				for _, h := range m.GetSniHosts() {
					if gatewayHost(gs, nsOf(vs.res), strings.ToLower(h)) != "" && !seen[h] {
						seen[h] = true
						snis = append(snis, strings.ToLower(h))
					}
				}
				if len(snis) == 0 {
					continue
				}
				sort.Strings(snis)
				dsts := s.l4Destinations(vs, tr.GetRoute(), port)
				if len(dsts) == 0 {
					continue
				}
				out = append(out, filterChain("sni:"+strings.Join(snis, ","), &listenerv3.FilterChainMatch{ServerNames: snis},
					append(s.networkRBACFilters(dsts[0].name), s.tcpProxy(dsts[0].name, dsts)...)...))
			}
		}
	}
	return out
}

// gatewayTCP forwards a TCP server's connections by the first bound
// VirtualService tcp route.
func (s *scope) gatewayTCP(gs gatewayServer, port uint32) *listenerv3.FilterChain {
	for _, vs := range s.virtualServices {
		if !contains(vs.gateways, gs.key) {
			continue
		}
		for _, tr := range vs.spec.GetTcp() {
			if !s.l4Matches(tr.GetMatch(), vs, gs.key, port) {
				continue
			}
			if dsts := s.l4Destinations(vs, tr.GetRoute(), port); len(dsts) > 0 {
				return filterChain("tcp."+u32(port), nil, append(s.networkRBACFilters(dsts[0].name), s.tcpProxy(dsts[0].name, dsts)...)...)
			}
		}
	}
	return nil
}
