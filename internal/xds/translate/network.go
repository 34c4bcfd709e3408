package translate

import (
	"sort"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// Several networks (Istio's split horizon): a proxy reaches endpoints on
// its own network directly and those on another network through that
// network's east-west gateway, which routes the still-encrypted mesh mTLS
// connection by its SNI (outbound_.PORT_.SUBSET_.HOST) to its local
// endpoints (a Gateway server in tls.mode AUTO_PASSTHROUGH).

const (
	// NetworkLabel names a workload's, namespace's or gateway Service's
	// network.
	NetworkLabel = "topology.istio.io/network"
	// EastWestPort is the port of a network's east-west gateway, Istio's
	// default (the gateway Service's port named "tls").
	EastWestPort = 15443
)

// NetworkGateway is one address where a network's east-west gateway is
// reached from the other networks.
type NetworkGateway struct {
	Address string
	Port    uint32
}

// SNIDNATClusterName is "outbound_.PORT_.SUBSET_.HOST": the SNI a client
// sidecar sends in mesh mTLS, and the name of the cluster an east-west
// gateway forwards that connection to.
func SNIDNATClusterName(port uint32, subset, host string) string {
	return "outbound_." + u32(port) + "_." + subset + "_." + host
}

// parseSNIDNATName splits SNIDNATClusterName's form; ok is false for other
// names.
func parseSNIDNATName(name string) (port, subset, host string, ok bool) {
	rest, found := strings.CutPrefix(name, "outbound_.")
	if !found {
		return "", "", "", false
	}
	port, rest, found = strings.Cut(rest, "_.")
	if !found {
		return "", "", "", false
	}
	subset, host, found = strings.Cut(rest, "_.")
	if !found || host == "" {
		return "", "", "", false
	}
	return port, subset, host, true
}

// networkGateways lists each network's east-west gateways as Istio finds
// them from the registry: every service labelled
// topology.istio.io/network=N with a port 15443, reached at its external
// addresses (LoadBalancer ingress, externalIPs) or, when it has none, at
// its healthy endpoints' addresses on that port. (Istio's MeshNetworks
// gateway addresses are not read.) Each list is sorted and without
// duplicates.
func (s *scope) networkGateways() map[string][]NetworkGateway {
	if s.gws != nil {
		return s.gws
	}
	gws := map[string][]NetworkGateway{}
	if s.in.Registry != nil {
		for _, svc := range s.in.Registry.Services {
			if !isNetworkGateway(svc) {
				continue
			}
			n := svc.Labels[NetworkLabel]
			if len(svc.ExternalAddresses) > 0 {
				for _, a := range svc.ExternalAddresses {
					gws[n] = append(gws[n], NetworkGateway{Address: a, Port: EastWestPort})
				}
				continue
			}
			for _, ep := range s.in.Registry.Endpoints[svc.Hostname] {
				if ep.ServicePort == EastWestPort && ep.Healthy {
					gws[n] = append(gws[n], NetworkGateway{Address: ep.Address, Port: ep.Port})
				}
			}
		}
	}
	for n, list := range gws {
		sort.Slice(list, func(i, j int) bool {
			if list[i].Address != list[j].Address {
				return list[i].Address < list[j].Address
			}
			return list[i].Port < list[j].Port
		})
		out := list[:0]
		for i, g := range list {
			if i == 0 || g != list[i-1] {
				out = append(out, g)
			}
		}
		gws[n] = out
	}
	s.gws = gws
	return gws
}

// isNetworkGateway reports whether svc is a network's east-west gateway:
// labelled with its network, with a port 15443.
func isNetworkGateway(svc *registry.Service) bool {
	return svc.Labels[NetworkLabel] != "" && svc.Port(EastWestPort) != nil
}

// remoteNetworks counts, per network, the healthy endpoints of one
// locality that the proxy reaches only through a gateway.
type remoteNetworks map[string]uint32

// gatewayEndpoints replaces the endpoints counted in remote by their
// networks' gateways: each gateway of a network gets an equal share of the
// network's endpoint count as its weight, times scale (see gatewayScale),
// and carries tlsMode istio, so the client originates mesh mTLS with the
// service's SNI. Networks with no known gateway are returned in dropped.
func (s *scope) gatewayEndpoints(remote remoteNetworks, scale uint32) (eps []*endpointv3.LbEndpoint, dropped []string) {
	gws := s.networkGateways()
	for _, n := range sortedKeys(remote) {
		list := gws[n]
		if len(list) == 0 {
			dropped = append(dropped, n)
			continue
		}
		w := remote[n] * scale / uint32(len(list))
		if w == 0 {
			w = 1
		}
		for _, g := range list {
			md := istioMetadata(map[string]*structpb.Value{"network": structpb.NewStringValue(n)})
			md.FilterMetadata[TransportSocketMatchKey] = &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}
			eps = append(eps, &endpointv3.LbEndpoint{
				HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(g.Address, g.Port)}},
				LoadBalancingWeight: u32v(w),
				Metadata:            md,
			})
		}
	}
	return eps, dropped
}

// gatewayScale is the least common multiple of the gateway counts of the
// networks in use, so that splitting a network's weight evenly over its
// gateways stays exact when every other weight is multiplied by it.
func (s *scope) gatewayScale(networks map[string]bool) uint32 {
	scale := uint32(1)
	for n := range networks {
		if k := uint32(len(s.networkGateways()[n])); k > 1 {
			scale = lcm(scale, k)
		}
	}
	return scale
}

func lcm(a, b uint32) uint32 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// NetworksWithoutGateway counts, per network, the healthy endpoints on a
// named network that has no known east-west gateway: proxies on the other
// networks are not sent them (Istio drops them too). trellisd logs them.
func NetworksWithoutGateway(reg *registry.Snapshot, mesh MeshOptions) map[string]int {
	s := buildScope(Input{Registry: reg, Mesh: mesh}, false)
	gws := s.networkGateways()
	out := map[string]int{}
	if reg == nil {
		return out
	}
	for _, svc := range reg.Services {
		if isNetworkGateway(svc) || svc.Resolution != registry.ResolutionStatic {
			continue
		}
		for _, ep := range reg.Endpoints[svc.Hostname] {
			if ep.Network != "" && ep.Healthy && len(gws[ep.Network]) == 0 {
				out[ep.Network]++
			}
		}
	}
	return out
}
