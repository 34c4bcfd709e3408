package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// An east-west gateway is a Gateway server with protocol TLS and
// tls.mode AUTO_PASSTHROUGH (Istio's cross-network-gateway, port 15443,
// hosts "*.local"). Clients on other networks send it their mesh mTLS
// connection unopened; its SNI, outbound_.PORT_.SUBSET_.HOST, names the
// service port and subset. The gateway's listener has one filter chain
// per such name (matched by the tls_inspector's server name) whose
// tcp_proxy forwards the bytes to the cluster of the same name: the
// subset's endpoints on the gateway's own network, without TLS of the
// gateway's (the client's mTLS goes through to the workload's sidecar).

// sniTarget is one service port and subset an east-west gateway serves.
type sniTarget struct {
	svc    *registry.Service
	port   registry.Port
	subset string
	labels map[string]string
	dr     *destRule
}

func (t sniTarget) name() string { return SNIDNATClusterName(t.port.Number, t.subset, t.svc.Hostname) }

// sniTargets are the mesh services with endpoint discovery whose hosts the
// server admits (its hosts, with their namespace parts), with every port
// and every subset of their DestinationRule, in hostname, port, subset
// order. Network gateways themselves are left out (no loop through them).
func (s *scope) sniTargets(gs gatewayServer) []sniTarget {
	var out []sniTarget
	for _, svc := range s.services {
		if svc.Resolution != registry.ResolutionStatic || svc.MeshExternal || isNetworkGateway(svc) || gatewayHost(gs, svc.Namespace, svc.Hostname) == "" {
			continue
		}
		dr := s.destinationRule(svc.Hostname)
		for _, p := range svc.Ports {
			out = append(out, sniTarget{svc: svc, port: p, dr: dr})
			if dr == nil {
				continue
			}
			for _, ss := range dr.spec.GetSubsets() {
				if ss.GetName() != "" {
					out = append(out, sniTarget{svc: svc, port: p, subset: ss.GetName(), labels: ss.GetLabels(), dr: dr})
				}
			}
		}
	}
	return out
}

// autoPassthroughChains are the server's SNI-matched filter chains.
func (s *scope) autoPassthroughChains(gs gatewayServer) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	for _, t := range s.sniTargets(gs) {
		n := t.name()
		out = append(out, filterChain(n, &listenerv3.FilterChainMatch{ServerNames: []string{n}},
			append(s.networkRBACFilters(n), s.tcpProxy(n, []weightedName{{name: n, weight: 100}})...)...))
	}
	return out
}

// sniDNATClusters are the clusters the gateway's AUTO_PASSTHROUGH servers
// forward to: like the outbound|PORT|SUBSET|HOST cluster (the
// DestinationRule's load balancing, connection pool and outlier detection)
// but with no TLS of their own, fed by EDS with the local network's
// endpoints only (see Endpoints).
func (s *scope) sniDNATClusters() []*clusterv3.Cluster {
	seen := map[string]bool{}
	var out []*clusterv3.Cluster
	for _, r := range s.gatewayServers() {
		if !r.autoPassthrough() {
			continue
		}
		for _, t := range s.sniTargets(r) {
			n := t.name()
			if seen[n] {
				continue
			}
			seen[n] = true
			c := s.buildCluster(t.svc, t.port, t.subset, t.labels, t.dr)
			c.Name = n
			c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: s.shared.ads, ServiceName: n}
			c.TransportSocket, c.TransportSocketMatches = nil, nil
			out = append(out, c)
		}
	}
	return out
}
