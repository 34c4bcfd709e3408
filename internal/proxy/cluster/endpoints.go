package cluster

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// compileEndpoints turns a load assignment into hosts. With dns set,
// addresses may be host names (STRICT_DNS/LOGICAL_DNS, resolved later).
// in may be nil (no telemetry identities).
func compileEndpoints(cla *endpointv3.ClusterLoadAssignment, cluster, path string, dns bool, in *telemetry.Interner) ([]*Host, error) {
	fe := &fieldErrors{}
	var hosts []*Host
	seen := map[string]bool{}
	for i, le := range cla.GetEndpoints() {
		lpath := fmt.Sprintf("%s.endpoints[%d]", path, i)
		if le.GetLedsClusterLocalityConfig() != nil {
			fe.add(lpath+".leds_cluster_locality_config", "LEDS is not supported")
		}
		loc := lb.Locality{Region: le.GetLocality().GetRegion(), Zone: le.GetLocality().GetZone(), SubZone: le.GetLocality().GetSubZone()}
		if le.GetPriority() > 128 {
			fe.add(lpath+".priority", "must be at most 128, got %d", le.GetPriority())
			continue
		}
		for j, e := range le.GetLbEndpoints() {
			epath := fmt.Sprintf("%s.lb_endpoints[%d]", lpath, j)
			ep := e.GetEndpoint()
			if ep == nil {
				fe.add(epath+".endpoint", "must be set (named endpoints are not supported)")
				continue
			}
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil {
				if ep.GetAddress().GetPipe() != nil {
					fe.add(epath+".endpoint.address.pipe", "unix socket upstreams are not supported")
				} else {
					fe.add(epath+".endpoint.address.socket_address", "must be set")
				}
				continue
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				fe.add(epath+".endpoint.address.socket_address.protocol", "only TCP is supported")
			}
			port := sa.GetPortValue()
			if sa.GetNamedPort() != "" {
				fe.add(epath+".endpoint.address.socket_address.named_port", "named ports are not supported; use port_value")
			}
			if port == 0 || port > 65535 {
				fe.add(epath+".endpoint.address.socket_address.port_value", "must be within [1, 65535], got %d", port)
				continue
			}
			host := sa.GetAddress()
			if ip, err := netip.ParseAddr(host); err == nil {
				host = ip.String()
			} else if !dns {
				fe.add(epath+".endpoint.address.socket_address.address", "%q is not an IP address (only STRICT_DNS/LOGICAL_DNS clusters take host names)", host)
				continue
			} else if host == "" {
				fe.add(epath+".endpoint.address.socket_address.address", "must not be empty")
				continue
			}
			var addr string
			if ip, err := netip.ParseAddr(host); err == nil {
				addr = netip.AddrPortFrom(ip, uint16(port)).String()
			} else {
				addr = host + ":" + strconv.Itoa(int(port))
			}
			w := uint32(1)
			if lw := e.GetLoadBalancingWeight(); lw != nil {
				w = lw.GetValue()
				if w == 0 {
					fe.add(epath+".load_balancing_weight", "must be at least 1")
				}
			}
			key := addr + "/" + strconv.Itoa(int(le.GetPriority()))
			if seen[key] {
				continue // Envoy keeps one host per address and priority
			}
			seen[key] = true
			h := &Host{
				Address:        addr,
				Weight:         w,
				Locality:       loc,
				Priority:       le.GetPriority(),
				LocalityWeight: le.GetLoadBalancingWeight().GetValue(),
				EDSHealth:      lb.HealthStatus(e.GetHealthStatus()),
			}
			if in != nil {
				if p, ok := endpointPeer(e.GetMetadata()); ok {
					h.Peer = in.Peer(p)
				}
			}
			h.ServiceAccount = str(e.GetMetadata().GetFilterMetadata()["istio"].GetFields()["service_account"])
			h.TransportMatch = matchMetadata(e.GetMetadata())
			hosts = append(hosts, h)
		}
	}
	// Priorities must be contiguous from 0 (Envoy rejects gaps).
	if len(hosts) > 0 {
		maxP := uint32(0)
		present := map[uint32]bool{}
		for _, h := range hosts {
			present[h.Priority] = true
			maxP = max(maxP, h.Priority)
		}
		for p := uint32(0); p <= maxP; p++ {
			if !present[p] {
				fe.add(path+".endpoints", "priorities must be contiguous from 0; priority %d has no endpoints", p)
				break
			}
		}
	}
	if cla.GetPolicy() != nil && len(cla.GetPolicy().GetDropOverloads()) > 0 {
		fe.add(path+".policy.drop_overloads", "drop overloads are not supported")
	}
	if err := fe.err(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cluster, err)
	}
	return hosts, nil
}

// endpointPeer reads an endpoint's Istio identity from
// metadata.filter_metadata["istio"]: workload "NAME;NAMESPACE;APP;VERSION;CLUSTER",
// and labels (canonical service/revision).
func endpointPeer(md *corev3.Metadata) (telemetry.Peer, bool) {
	istio := md.GetFilterMetadata()["istio"]
	if istio == nil {
		return telemetry.Peer{}, false
	}
	f := istio.GetFields()
	var p telemetry.Peer
	if w := str(f["workload"]); w != "" {
		parts := strings.Split(w, ";")
		get := func(i int) string {
			if i < len(parts) {
				return parts[i]
			}
			return ""
		}
		p.Workload, p.Namespace, p.App, p.Version, p.Cluster = get(0), get(1), get(2), get(3), get(4)
	}
	if l := f["labels"].GetStructValue().GetFields(); l != nil {
		p.CanonicalService = str(l["service.istio.io/canonical-name"])
		p.CanonicalRevision = str(l["service.istio.io/canonical-revision"])
		if p.App == "" {
			p.App = str(l["app"])
		}
		if p.Version == "" {
			p.Version = str(l["version"])
		}
	}
	if p.CanonicalService == "" {
		p.CanonicalService = p.App
		if p.CanonicalService == "" {
			p.CanonicalService = p.Workload
		}
	}
	if p.CanonicalRevision == "" {
		p.CanonicalRevision = p.Version
		if p.CanonicalRevision == "" {
			p.CanonicalRevision = "latest"
		}
	}
	// Principal stays empty: Istio reports a peer principal only when the
	// connection is mutual TLS, which this plaintext proxy does not do yet.
	return p, true
}
