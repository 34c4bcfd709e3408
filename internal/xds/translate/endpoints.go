package translate

import (
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// Endpoints returns the ClusterLoadAssignments for the named EDS clusters
// ("outbound|PORT|SUBSET|HOST"), sorted by name; names that are not
// outbound clusters of a known static service (or name an unknown subset)
// are skipped, and a known cluster with no endpoints gets an empty
// assignment (so the proxy learns it is empty). The result depends on the
// registry and, through the DestinationRule that applies (looked up from the
// proxy's namespace first), on the subset labels and on whether locality
// failover is on (outlierDetection set); only then does it also depend on
// in.Proxy.Locality. Like Outbound it reads the proxy only through
// NewOutboundProxy(in), so it is the same for all proxies with the same
// OutboundProxy, and in practice the same for all proxies of a mesh whose
// DestinationRules are not shadowed per namespace.
func Endpoints(in Input, clusterNames []string) []*endpointv3.ClusterLoadAssignment {
	in.Proxy = NewOutboundProxy(in).Proxy()
	s := newScope(in)
	names := append([]string(nil), clusterNames...)
	sort.Strings(names)
	var out []*endpointv3.ClusterLoadAssignment
	for i, name := range names {
		if i > 0 && names[i-1] == name {
			continue
		}
		dir, portS, subset, host, ok := ParseClusterName(name)
		sniDNAT := false
		if !ok {
			// An east-west gateway's outbound_.PORT_.SUBSET_.HOST cluster.
			portS, subset, host, sniDNAT = parseSNIDNATName(name)
			ok, dir = sniDNAT, "outbound"
		}
		if !ok || dir != "outbound" {
			continue
		}
		port, err := strconv.ParseUint(portS, 10, 32)
		if err != nil {
			continue
		}
		svc := s.anyService(host)
		if svc == nil || svc.Resolution != registry.ResolutionStatic {
			continue
		}
		dr := s.destinationRule(host)
		var labels map[string]string
		if subset != "" {
			found := false
			if dr != nil {
				for _, ss := range dr.spec.GetSubsets() {
					if ss.GetName() == subset {
						labels, found = ss.GetLabels(), true
					}
				}
			}
			if !found {
				continue
			}
		}
		out = append(out, s.loadAssignment(name, svc, uint32(port), labels, trafficPolicy(dr, uint32(port), subset), sniDNAT))
	}
	return out
}

// loadAssignment groups the service's endpoints on servicePort that carry
// subsetLabels by locality; with locality failover on, each locality gets a
// priority by how much of it matches the proxy's locality. Endpoints on
// another network than the proxy's are replaced by their network's
// east-west gateways (split horizon, see network.go), or left out when
// the network has no known gateway; localOnly (an east-west gateway's own
// clusters) leaves them all out.
func (s *scope) loadAssignment(name string, svc *registry.Service, servicePort uint32, subsetLabels map[string]string, pol policy, localOnly bool) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	failover := pol.od != nil && (pol.lb.GetLocalityLbSetting() == nil || pol.lb.GetLocalityLbSetting().GetEnabled() == nil || pol.lb.GetLocalityLbSetting().GetEnabled().GetValue())
	byLocality := map[string]*endpointv3.LocalityLbEndpoints{}
	var localities []string
	groupOf := func(l string) *endpointv3.LocalityLbEndpoints {
		group := byLocality[l]
		if group == nil {
			group = &endpointv3.LocalityLbEndpoints{Locality: locality(l)}
			if failover {
				group.Priority = s.localityPriority(l, pol)
			}
			byLocality[l] = group
			localities = append(localities, l)
		}
		return group
	}
	var local []*registry.Endpoint
	remote := map[string]remoteNetworks{} // by locality
	networks := map[string]bool{}
	for _, ep := range s.in.Registry.Endpoints[svc.Hostname] {
		if ep.ServicePort != servicePort || !registry.Matches(subsetLabels, ep.Labels) {
			continue
		}
		// A gateway's own addresses are reached from every network.
		if SameNetwork(s.proxy.Network, ep.Network) || isNetworkGateway(svc) {
			local = append(local, ep)
			continue
		}
		if localOnly || !ep.Healthy || svc.Resolution != registry.ResolutionStatic {
			continue
		}
		if remote[ep.Locality] == nil {
			remote[ep.Locality] = remoteNetworks{}
		}
		w := ep.Weight
		if w == 0 {
			w = 1
		}
		remote[ep.Locality][ep.Network] += w
		networks[ep.Network] = true
	}
	scale := s.gatewayScale(networks)
	for _, ep := range local {
		lbe := s.shared.lbEndpoints[ep]
		if lbe == nil {
			lbe = lbEndpoint(ep)
			s.shared.lbEndpoints[ep] = lbe
		}
		if scale > 1 {
			lbe = proto.Clone(lbe).(*endpointv3.LbEndpoint)
			lbe.LoadBalancingWeight = u32v(lbe.GetLoadBalancingWeight().GetValue() * scale)
		}
		group := groupOf(ep.Locality)
		group.LbEndpoints = append(group.LbEndpoints, lbe)
	}
	for _, l := range sortedKeys(remote) {
		if eps, _ := s.gatewayEndpoints(remote[l], scale); len(eps) > 0 {
			group := groupOf(l)
			group.LbEndpoints = append(group.LbEndpoints, eps...)
		}
	}
	sort.Strings(localities)
	if failover {
		compactPriorities(byLocality)
	}
	for _, l := range localities {
		g := byLocality[l]
		var w uint32
		for _, e := range g.LbEndpoints {
			w += e.GetLoadBalancingWeight().GetValue()
		}
		g.LoadBalancingWeight = u32v(w)
		cla.Endpoints = append(cla.Endpoints, g)
	}
	return cla
}

// SameNetwork reports whether a proxy on network proxyNet reaches an
// endpoint on network epNet directly: an empty network is everyone's.
func SameNetwork(proxyNet, epNet string) bool {
	return proxyNet == "" || epNet == "" || proxyNet == epNet
}

func lbEndpoint(ep *registry.Endpoint) *endpointv3.LbEndpoint {
	health := corev3.HealthStatus_HEALTHY
	if !ep.Healthy {
		health = corev3.HealthStatus_UNHEALTHY
	}
	weight := ep.Weight
	if weight == 0 {
		weight = 1
	}
	app, version := ep.Labels["app"], ep.Labels["version"]
	if app == "" {
		app = ep.Labels["app.kubernetes.io/name"]
	}
	fields := map[string]*structpb.Value{
		"workload": structpb.NewStringValue(strings.Join([]string{ep.Workload, ep.Namespace, app, version, ep.Cluster}, ";")),
	}
	if len(ep.Labels) > 0 {
		fields["labels"] = stringMapStruct(ep.Labels)
	}
	if ep.ServiceAccount != "" {
		fields["service_account"] = structpb.NewStringValue(ep.ServiceAccount)
	}
	if ep.Cluster != "" {
		fields["cluster"] = structpb.NewStringValue(ep.Cluster)
	}
	if ep.Network != "" {
		fields["network"] = structpb.NewStringValue(ep.Network)
	}
	md := istioMetadata(fields)
	endpointTLSMode(md, ep)
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ep.Address, ep.Port)}},
		HealthStatus:        health,
		LoadBalancingWeight: u32v(weight),
		Metadata:            md,
	}
}

// locality is always set, empty when unknown: grpc-go rejects an
// assignment whose locality is missing.
func locality(l string) *corev3.Locality {
	if l == "" {
		return &corev3.Locality{}
	}
	parts := strings.SplitN(l, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

// localityPriority is Istio's failover order: 0 for the proxy's own
// region/zone/subzone, 1 same zone, 2 same region, 3 a region named as the
// failover target of the proxy's region, 4 anything else.
func (s *scope) localityPriority(epLocality string, pol policy) uint32 {
	pl := strings.SplitN(s.proxy.Locality, "/", 3)
	el := strings.SplitN(epLocality, "/", 3)
	for len(pl) < 3 {
		pl = append(pl, "")
	}
	for len(el) < 3 {
		el = append(el, "")
	}
	switch {
	case pl[0] == el[0] && pl[1] == el[1] && pl[2] == el[2]:
		return 0
	case pl[0] == el[0] && pl[1] == el[1]:
		return 1
	case pl[0] == el[0]:
		return 2
	}
	for _, f := range pol.lb.GetLocalityLbSetting().GetFailover() {
		if f.GetFrom() == pl[0] && f.GetTo() == el[0] {
			return 3
		}
	}
	return 4
}

// compactPriorities renumbers priorities 0..N without gaps, as Envoy wants.
func compactPriorities(groups map[string]*endpointv3.LocalityLbEndpoints) {
	used := map[uint32]bool{}
	for _, g := range groups {
		used[g.Priority] = true
	}
	levels := make([]uint32, 0, len(used))
	for p := range used {
		levels = append(levels, p)
	}
	sort.Slice(levels, func(i, j int) bool { return levels[i] < levels[j] })
	dense := map[uint32]uint32{}
	for i, p := range levels {
		dense[p] = uint32(i)
	}
	for _, g := range groups {
		g.Priority = dense[g.Priority]
	}
}
