package translate

import (
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// meshGateway is the reserved gateway name for sidecars.
const meshGateway = "mesh"

// scope is what one proxy can see, resolved once per translation: the
// services in its Sidecar egress scope, the VirtualServices bound to it
// (mesh for sidecars, its gateways for routers) and the DestinationRules
// exported to its namespace.
type scope struct {
	in       Input
	mesh     MeshOptions
	proxy    *Proxy
	allowAny bool

	services []*registry.Service // visible, sorted by hostname
	visible  map[string]*registry.Service
	sidecar  *config.Resource // the Sidecar that applies, or nil

	virtualServices []*virtualService // exported to the proxy's namespace, sorted by namespace/name
	destRules       []*destRule       // exported to the proxy's namespace, sorted by namespace/name
	gateways        []*config.Resource

	// Indexes by exact host, and the wildcard-host entries, for lookups.
	vsByHost   map[string][]int // index into virtualServices
	vsWildcard []int
	drByHost   map[string][]*destRule
	drWildcard []*destRule

	// Read-only messages shared between the resources of one translation.
	shared sharedParts
	// defaultRetry is shared by routes without a retries block.
	defaultRetry *routev3.RetryPolicy
	// gws caches networkGateways.
	gws map[string][]NetworkGateway
	// stats are the istio.stats filter configs, [0] inbound, [1] outbound.
	stats [2]statsCache
}

type virtualService struct {
	res      *config.Resource
	spec     *networking.VirtualService
	hosts    []string         // resolved in the VirtualService's namespace
	gateways []string         // "ns/name" or "mesh"; empty spec means mesh
	meta     *corev3.Metadata // route metadata naming this VirtualService, built on first use
}

type destRule struct {
	res  *config.Resource
	spec *networking.DestinationRule
	host string
}

// newScope resolves what the proxy sees.
func newScope(in Input) *scope { return buildScope(in, true) }

// buildScope with outbound false only normalises the proxy and mesh options
// and picks the Sidecar resource (enough for Inbound).
func buildScope(in Input, outbound bool) *scope {
	mesh := in.Mesh
	if mesh.DomainSuffix == "" {
		mesh.DomainSuffix = registry.DefaultDomainSuffix
	}
	if mesh.RootNamespace == "" {
		mesh.RootNamespace = "istio-system"
	}
	p := in.Proxy
	if p == nil {
		p = &Proxy{Type: SidecarProxy, Namespace: "default"}
	}
	if p.Namespace == "" {
		cp := *p
		cp.Namespace = "default"
		p = &cp
	}
	s := &scope{in: in, mesh: mesh, proxy: p, allowAny: mesh.OutboundAllowAny, visible: map[string]*registry.Service{}, shared: newSharedParts()}
	if p.Type == SidecarProxy {
		s.sidecar = selectSidecar(in.Config, p, mesh.RootNamespace)
	}
	if !outbound {
		return s
	}
	var sc *networking.Sidecar
	if s.sidecar != nil {
		sc = s.sidecar.Spec.(*networking.Sidecar)
		switch sc.GetOutboundTrafficPolicy().GetMode() {
		case networking.OutboundTrafficPolicy_REGISTRY_ONLY:
			if sc.GetOutboundTrafficPolicy() != nil {
				s.allowAny = false
			}
		case networking.OutboundTrafficPolicy_ALLOW_ANY:
			s.allowAny = true
		}
	}
	if in.Registry != nil {
		for _, svc := range in.Registry.Services {
			if !exportedTo(svc.ExportTo, svc.Namespace, p.Namespace) {
				continue
			}
			if sc != nil {
				ok, ports := sidecarAllows(sc, nsOf(s.sidecar), svc)
				if !ok {
					continue
				}
				if ports != nil {
					// Only the egress listeners' ports: a narrowed copy.
					cp := *svc
					cp.Ports = nil
					for _, p := range svc.Ports {
						if ports[p.Number] {
							cp.Ports = append(cp.Ports, p)
						}
					}
					svc = &cp
				}
			}
			s.services = append(s.services, svc)
			s.visible[svc.Hostname] = svc
		}
	}
	for _, r := range in.Config.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok || vs == nil || !exportedTo(vs.GetExportTo(), nsOf(r), p.Namespace) {
			continue
		}
		v := &virtualService{res: r, spec: vs}
		for _, h := range vs.GetHosts() {
			v.hosts = append(v.hosts, registry.ResolveHost(h, nsOf(r), mesh.DomainSuffix))
		}
		v.gateways = resolveGateways(vs.GetGateways(), nsOf(r))
		s.virtualServices = append(s.virtualServices, v)
		idx := len(s.virtualServices) - 1
		for _, h := range uniq(v.hosts) {
			if strings.HasPrefix(h, "*") {
				s.vsWildcard = append(s.vsWildcard, idx)
			} else {
				if s.vsByHost == nil {
					s.vsByHost = map[string][]int{}
				}
				s.vsByHost[h] = append(s.vsByHost[h], idx)
			}
		}
	}
	for _, r := range in.Config.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok || dr == nil || !exportedTo(dr.GetExportTo(), nsOf(r), p.Namespace) {
			continue
		}
		if sel := dr.GetWorkloadSelector().GetMatchLabels(); len(sel) > 0 && (nsOf(r) != p.Namespace || !registry.Matches(sel, p.Labels)) {
			continue
		}
		d := &destRule{res: r, spec: dr, host: registry.ResolveHost(dr.GetHost(), nsOf(r), mesh.DomainSuffix)}
		s.destRules = append(s.destRules, d)
		if strings.HasPrefix(d.host, "*") {
			s.drWildcard = append(s.drWildcard, d)
		} else {
			if s.drByHost == nil {
				s.drByHost = map[string][]*destRule{}
			}
			s.drByHost[d.host] = append(s.drByHost[d.host], d)
		}
	}
	if p.Type == RouterProxy {
		s.gateways = selectGateways(in.Config, p)
	}
	return s
}

func nsOf(r *config.Resource) string {
	if r.Namespace == "" {
		return "default"
	}
	return r.Namespace
}

// exportedTo applies Istio's exportTo: empty or "*" is everywhere, "." is
// the owner's namespace, "~" is nowhere, anything else a namespace name.
func exportedTo(exportTo []string, owner, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if owner == ns {
				return true
			}
		case "~":
		default:
			if e == ns {
				return true
			}
		}
	}
	return false
}

func resolveGateways(gws []string, ns string) []string {
	if len(gws) == 0 {
		return []string{meshGateway}
	}
	out := make([]string, 0, len(gws))
	for _, g := range gws {
		out = append(out, resolveGateway(g, ns))
	}
	return out
}

func resolveGateway(g, ns string) string {
	if g == meshGateway || strings.Contains(g, "/") {
		return g
	}
	if i := strings.IndexByte(g, '.'); i > 0 {
		// "name.namespace.svc.cluster.local" form.
		rest := g[i+1:]
		return strings.SplitN(rest, ".", 2)[0] + "/" + g[:i]
	}
	return ns + "/" + g
}

// selectSidecar picks the Sidecar resource for a proxy as Istio does: one in
// the proxy's namespace whose workloadSelector matches its labels, else the
// one in its namespace with no selector, else the root namespace's one with
// no selector.
func selectSidecar(cfg *config.Snapshot, p *Proxy, root string) *config.Resource {
	var nsDefault, rootDefault *config.Resource
	for _, r := range cfg.List(config.KindSidecar) {
		sc, ok := r.Spec.(*networking.Sidecar)
		if !ok || sc == nil {
			continue
		}
		sel := sc.GetWorkloadSelector().GetLabels()
		switch {
		case nsOf(r) == p.Namespace && len(sel) > 0:
			if registry.Matches(sel, p.Labels) {
				return r
			}
		case nsOf(r) == p.Namespace:
			if nsDefault == nil {
				nsDefault = r
			}
		case nsOf(r) == root && len(sel) == 0:
			if rootDefault == nil {
				rootDefault = r
			}
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

// sidecarAllows reports whether an egress listener of the Sidecar lists
// the service in its hosts ("ns/dnsName", with "*" and "." for namespace,
// and "~" for none), and on which ports: nil means all, else only the
// ports of the matching egress listeners that name a port.
func sidecarAllows(sc *networking.Sidecar, scNS string, svc *registry.Service) (bool, map[uint32]bool) {
	if len(sc.GetEgress()) == 0 {
		return true, nil
	}
	var ports map[uint32]bool
	allowed := false
	for _, eg := range sc.GetEgress() {
		if !egressListsHost(eg, scNS, svc) {
			continue
		}
		allowed = true
		p := eg.GetPort().GetNumber()
		if p == 0 {
			return true, nil
		}
		if ports == nil {
			ports = map[uint32]bool{}
		}
		ports[p] = true
	}
	return allowed, ports
}

func egressListsHost(eg *networking.IstioEgressListener, scNS string, svc *registry.Service) bool {
	for _, h := range eg.GetHosts() {
		ns, host, ok := strings.Cut(h, "/")
		if !ok {
			continue
		}
		switch ns {
		case "*":
		case ".":
			if svc.Namespace != scNS {
				continue
			}
		case "~":
			continue
		default:
			if svc.Namespace != ns {
				continue
			}
		}
		if host == "*" || registry.HostMatches(host, svc.Hostname) || host == svc.Name {
			return true
		}
	}
	return false
}

// selectGateways returns the Gateways whose selector matches the router's
// labels, in namespace/name order.
func selectGateways(cfg *config.Snapshot, p *Proxy) []*config.Resource {
	var out []*config.Resource
	for _, r := range cfg.List(config.KindGateway) {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok || gw == nil || len(gw.GetSelector()) == 0 {
			continue
		}
		if registry.Matches(gw.GetSelector(), p.Labels) {
			out = append(out, r)
		}
	}
	return out
}

// anyService returns a service by hostname whether or not the Sidecar scope
// shows it (routes may still name it).
func (s *scope) anyService(host string) *registry.Service {
	if svc := s.visible[host]; svc != nil {
		return svc
	}
	return s.in.Registry.Service(host)
}

// virtualServicesFor returns the VirtualServices bound to gateway (or
// "mesh") whose hosts match host, most specific host first and then in
// namespace/name order, with the host of each that matched.
func (s *scope) virtualServicesFor(gateway, host string) []*virtualService {
	type hit struct {
		vs    *virtualService
		exact bool
		n     int
	}
	var hits []hit
	consider := func(i int) {
		vs := s.virtualServices[i]
		if !contains(vs.gateways, gateway) && !matchGatewayNamed(vs, gateway) {
			return
		}
		for _, h := range vs.hosts {
			if h == host {
				hits = append(hits, hit{vs, true, i})
				return
			}
		}
		for _, h := range vs.hosts {
			if registry.HostMatches(h, host) {
				hits = append(hits, hit{vs, false, i})
				return
			}
		}
	}
	for _, i := range s.vsByHost[host] {
		consider(i)
	}
	for _, i := range s.vsWildcard {
		if !containsInt(s.vsByHost[host], i) {
			consider(i)
		}
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].exact != hits[j].exact {
			return hits[i].exact
		}
		return hits[i].n < hits[j].n
	})
	out := make([]*virtualService, len(hits))
	for i, h := range hits {
		out[i] = h.vs
	}
	return out
}

// destinationRule returns the DestinationRule for host the way Istio looks
// it up: the proxy's namespace first, then the service's namespace, then the
// root namespace, then any other namespace exporting one; an exact host
// beats a wildcard.
func (s *scope) destinationRule(host string) *destRule {
	svcNS := ""
	if svc := s.anyService(host); svc != nil {
		svcNS = svc.Namespace
	}
	rank := func(d *destRule) int {
		switch nsOf(d.res) {
		case s.proxy.Namespace:
			return 0
		case svcNS:
			return 1
		case s.mesh.RootNamespace:
			return 2
		}
		return 3
	}
	var best *destRule
	bestRank, bestExact, bestLen := 99, false, -1
	candidates := append(append([]*destRule(nil), s.drByHost[host]...), s.drWildcard...)
	for _, d := range candidates {
		if !registry.HostMatches(d.host, host) {
			continue
		}
		r, exact := rank(d), d.host == host
		better := false
		switch {
		case best == nil:
			better = true
		case r != bestRank:
			better = r < bestRank
		case exact != bestExact:
			better = exact
		default:
			better = len(d.host) > bestLen
		}
		if better {
			best, bestRank, bestExact, bestLen = d, r, exact, len(d.host)
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func u32(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func containsInt(list []int, n int) bool {
	for _, v := range list {
		if v == n {
			return true
		}
	}
	return false
}

func uniq(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range list {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// matchGatewayNamed reports whether some http/tcp/tls match of the
// VirtualService names the gateway in its own gateways field.
func matchGatewayNamed(vs *virtualService, gateway string) bool {
	ns := nsOf(vs.res)
	for _, hr := range vs.spec.GetHttp() {
		for _, m := range hr.GetMatch() {
			if len(m.GetGateways()) > 0 && contains(resolveGateways(m.GetGateways(), ns), gateway) {
				return true
			}
		}
	}
	return false
}
