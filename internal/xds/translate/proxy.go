package translate

import (
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// ProxyFromNode reads a proxy's identity from its xDS node, following
// docs/xds-contract.md: the id is TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN
// and the metadata carries NAMESPACE, LABELS, INSTANCE_IPS, SERVICE_ACCOUNT,
// WORKLOAD_NAME, CLUSTER_ID, NETWORK and GENERATOR. Metadata wins over the
// id where both say something. A malformed id is an error that says what
// was expected.
func ProxyFromNode(node *corev3.Node) (*Proxy, error) {
	if node == nil {
		return nil, fmt.Errorf("node: missing; an xDS request must carry a node with an id like %q", exampleNodeID)
	}
	id := node.GetId()
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return nil, fmt.Errorf("node.id %q: got %d '~'-separated fields, want 4 (TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local, e.g. %q)", id, len(parts), exampleNodeID)
	}
	p := &Proxy{ID: id}
	switch t := ProxyType(parts[0]); t {
	case SidecarProxy, RouterProxy:
		p.Type = t
	default:
		return nil, fmt.Errorf("node.id %q: type %q is not one of %q, %q", id, parts[0], SidecarProxy, RouterProxy)
	}
	if parts[1] != "" {
		if _, err := netip.ParseAddr(parts[1]); err != nil {
			return nil, fmt.Errorf("node.id %q: IP field %q is not an IP address: %w", id, parts[1], err)
		}
		p.IPs = []string{parts[1]}
	}
	if podNS := parts[2]; podNS != "" {
		if i := strings.LastIndexByte(podNS, '.'); i > 0 {
			p.Name, p.Namespace = podNS[:i], podNS[i+1:]
		} else {
			p.Name = podNS
		}
	}
	if p.Namespace == "" {
		if dom := parts[3]; dom != "" {
			p.Namespace = strings.SplitN(dom, ".", 2)[0]
		}
	}
	md := node.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	if v := str("NAMESPACE"); v != "" {
		p.Namespace = v
	}
	if v := str("WORKLOAD_NAME"); v != "" && p.Name == "" {
		p.Name = v
	}
	if v := str("INSTANCE_IPS"); v != "" {
		var ips []string
		for _, ip := range strings.Split(v, ",") {
			ip = strings.TrimSpace(ip)
			if ip == "" {
				continue
			}
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("node.metadata.INSTANCE_IPS: %q is not an IP address: %w", ip, err)
			}
			ips = append(ips, ip)
		}
		p.IPs = ips
	}
	if l := md["LABELS"]; l != nil {
		s, ok := l.GetKind().(*structpb.Value_StructValue)
		if !ok {
			return nil, fmt.Errorf("node.metadata.LABELS: got %T, want a struct of strings", l.GetKind())
		}
		p.Labels = map[string]string{}
		for k, v := range s.StructValue.GetFields() {
			sv, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, fmt.Errorf("node.metadata.LABELS.%s: got %T, want a string", k, v.GetKind())
			}
			p.Labels[k] = sv.StringValue
		}
	}
	p.ServiceAccount = str("SERVICE_ACCOUNT")
	p.Cluster = str("CLUSTER_ID")
	p.Network = str("NETWORK")
	p.Generator = str("GENERATOR")
	if loc := node.GetLocality(); loc != nil {
		p.Locality = strings.TrimRight(loc.GetRegion()+"/"+loc.GetZone()+"/"+loc.GetSubZone(), "/")
	}
	if l := p.Labels[LocalityLabel]; p.Locality == "" && l != "" {
		// As Istio: the pod's istio-locality label ("region.zone.subzone")
		// when the node names no locality.
		p.Locality = strings.TrimRight(strings.ReplaceAll(l, ".", "/"), "/")
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("node.id %q: no namespace in the POD.NAMESPACE field nor in node.metadata.NAMESPACE", id)
	}
	return p, nil
}

// LocalityLabel is the pod label naming a workload's locality
// ("region.zone.subzone"), Istio's istio-locality.
const LocalityLabel = "istio-locality"

const exampleNodeID = "sidecar~10.0.0.5~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local"
