package local

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Options say where the local mesh lives; the zero value of each field is
// documented and usable.
type Options struct {
	// Prefix starts the name of every namespace, veth and bridge created,
	// so leftovers can be found and two meshes (a demo and a test) do not
	// collide; empty means "trellis". At most 8 characters.
	Prefix string
	// Subnet holds the bridge (first address, where trellisd listens) and
	// the workloads (from the 10th address on); zero means 10.244.0.0/24.
	Subnet netip.Prefix
	// VIPSubnet holds the services' virtual IPs, which exist only as
	// ServiceEntry addresses the proxies capture; zero means 10.245.0.0/24.
	VIPSubnet netip.Prefix
	// DomainSuffix is the cluster domain; empty means "cluster.local".
	DomainSuffix string
	// XDSPort is trellisd's plaintext xDS port on the bridge; zero means 15010.
	XDSPort int
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = "trellis"
	}
	if !o.Subnet.IsValid() {
		o.Subnet = netip.MustParsePrefix("10.244.0.0/24")
	}
	if !o.VIPSubnet.IsValid() {
		o.VIPSubnet = netip.MustParsePrefix("10.245.0.0/24")
	}
	if o.DomainSuffix == "" {
		o.DomainSuffix = "cluster.local"
	}
	if o.XDSPort == 0 {
		o.XDSPort = 15010
	}
	return o
}

// Plan is everything Up will create, computed without touching the
// machine.
type Plan struct {
	Options   Options
	Bridge    string
	HostIP    netip.Addr // the bridge's address; trellisd's xDS listens here
	Services  []PlacedService
	Workloads []PlacedWorkload
	// Networks are the bridges: one, unnamed, on Options.Subnet (Bridge,
	// HostIP), or one per Spec network, the first being Bridge/HostIP.
	Networks []PlacedNetwork
}

// PlacedNetwork is one bridge and its subnet.
type PlacedNetwork struct {
	Name   string // empty for a single-network mesh
	Bridge string
	Subnet netip.Prefix
	HostIP netip.Addr // the bridge's address
}

// MultiNetwork reports whether the workloads are on named, separate
// networks.
func (p *Plan) MultiNetwork() bool { return len(p.Networks) > 0 && p.Networks[0].Name != "" }

func (p *Plan) network(name string) PlacedNetwork {
	for _, n := range p.Networks {
		if n.Name == name {
			return n
		}
	}
	return p.Networks[0]
}

// PlacedService is a service with its FQDN and VIP.
type PlacedService struct {
	Service
	Namespace string
	FQDN      string
	VIP       netip.Addr
}

// PlacedWorkload is a workload with its namespace and address.
type PlacedWorkload struct {
	Workload
	Namespace string     // mesh namespace, e.g. istio-demo
	Netns     string     // network namespace, e.g. trellis-bill-service-v1
	HostVeth  string     // the veth end on the bridge; the other end is eth0 in Netns
	IP        netip.Addr // eth0's address
	// InboundPorts are the ports the app serves (the target ports of the
	// services selecting it).
	InboundPorts []uint32
	// EntryPorts, when set, become the WorkloadEntry's ports (service port
	// name -> the port the app really listens on), for workloads sharing
	// one address without interception.
	EntryPorts map[string]uint32
	// Net is the workload's network (its bridge, subnet, host address).
	Net PlacedNetwork
	// For an east-west gateway: its second link, eth1, on the other
	// network's bridge (ExternalNet) at ExternalIP, the address other
	// networks reach it by; ExternalVeth is that link's end on the bridge.
	ExternalNet  PlacedNetwork
	ExternalIP   netip.Addr
	ExternalVeth string
}

// NodeID is the proxy's xDS node id (router for an east-west gateway).
func (w PlacedWorkload) NodeID(domain string) string {
	typ := "sidecar"
	if w.EastWestGateway {
		typ = "router"
	}
	return fmt.Sprintf("%s~%s~%s.%s~%s.svc.%s", typ, w.IP, w.Name, w.Namespace, w.Namespace, domain)
}

// XDSAddress is trellisd's address as the proxies see it.
func (p *Plan) XDSAddress() string {
	return netip.AddrPortFrom(p.HostIP, uint16(p.Options.XDSPort)).String()
}

// NewPlan places every service and workload. It is pure.
func NewPlan(spec *Spec, opts Options) (*Plan, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if len(o.Prefix) > 8 {
		return nil, fmt.Errorf("prefix: %q is longer than 8 characters (interface names are limited to 15)", o.Prefix)
	}
	if !o.Subnet.Addr().Is4() || !o.VIPSubnet.Addr().Is4() {
		return nil, fmt.Errorf("subnet: IPv4 subnets only, got %s and %s", o.Subnet, o.VIPSubnet)
	}
	o.Subnet, o.VIPSubnet = o.Subnet.Masked(), o.VIPSubnet.Masked()
	if o.Subnet.Overlaps(o.VIPSubnet) {
		return nil, fmt.Errorf("subnet %s overlaps vip-subnet %s; pick two separate ranges", o.Subnet, o.VIPSubnet)
	}
	if len(spec.Networks) > 0 && opts.Subnet.IsValid() {
		return nil, fmt.Errorf("subnet: the spec's networks name their own subnets; remove the subnet option")
	}
	p := &Plan{Options: o}
	if len(spec.Networks) == 0 {
		p.Networks = []PlacedNetwork{{Bridge: o.Prefix + "0", Subnet: o.Subnet, HostIP: o.Subnet.Addr().Next()}}
	}
	for i, n := range spec.Networks {
		sub := netip.MustParsePrefix(n.Subnet).Masked() // Validate checked it
		for _, other := range append([]netip.Prefix{o.VIPSubnet}, networkSubnets(p.Networks)...) {
			if sub.Overlaps(other) {
				return nil, fmt.Errorf("networks[%d].subnet %s overlaps %s; pick separate ranges", i, sub, other)
			}
		}
		bridge := o.Prefix + "0"
		if i > 0 {
			bridge = fmt.Sprintf("%sb%d", o.Prefix, i)
		}
		p.Networks = append(p.Networks, PlacedNetwork{Name: n.Name, Bridge: bridge, Subnet: sub, HostIP: sub.Addr().Next()})
	}
	p.Bridge, p.HostIP = p.Networks[0].Bridge, p.Networks[0].HostIP
	next := map[string]netip.Addr{}
	alloc := func(n PlacedNetwork) (netip.Addr, error) {
		ip, ok := next[n.Bridge]
		if !ok {
			ip = n.HostIP
			for i := 0; i < 9; i++ {
				ip = ip.Next()
			}
		}
		if !n.Subnet.Contains(ip) || ip == lastAddr(n.Subnet) {
			return ip, fmt.Errorf("subnet %s is too small for %d workloads", n.Subnet, len(spec.Workloads))
		}
		next[n.Bridge] = ip.Next()
		return ip, nil
	}
	veths := 0
	for _, w := range spec.Workloads {
		net := p.network(w.Network)
		ip, err := alloc(net)
		if err != nil {
			return nil, err
		}
		pw := PlacedWorkload{
			Workload:     w,
			Namespace:    spec.namespace(w.Namespace),
			Netns:        o.Prefix + "-" + w.Name,
			HostVeth:     fmt.Sprintf("%sv%d", o.Prefix, veths),
			IP:           ip,
			InboundPorts: spec.inboundPorts(w),
			Net:          net,
		}
		veths++
		if w.EastWestGateway {
			for _, other := range p.Networks {
				if other.Name != net.Name {
					pw.ExternalNet = other
				}
			}
			if pw.ExternalIP, err = alloc(pw.ExternalNet); err != nil {
				return nil, err
			}
			pw.ExternalVeth = fmt.Sprintf("%sv%d", o.Prefix, veths)
			veths++
			pw.InboundPorts = nil
		}
		p.Workloads = append(p.Workloads, pw)
	}
	vip := o.VIPSubnet.Addr().Next()
	for i := 0; i < 9; i++ {
		vip = vip.Next()
	}
	for _, s := range spec.Services {
		if !o.VIPSubnet.Contains(vip) {
			return nil, fmt.Errorf("vip-subnet %s is too small for %d services", o.VIPSubnet, len(spec.Services))
		}
		ns := spec.namespace(s.Namespace)
		p.Services = append(p.Services, PlacedService{Service: s, Namespace: ns, FQDN: s.Name + "." + ns + ".svc." + o.DomainSuffix, VIP: vip})
		vip = vip.Next()
	}
	return p, nil
}

func networkSubnets(ns []PlacedNetwork) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.Subnet)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// MeshConfig renders the ServiceEntry and WorkloadEntry resources that
// register the local workloads with trellisd, as one multi-document YAML.
func (p *Plan) MeshConfig() ([]byte, error) {
	var docs []string
	for _, s := range p.Services {
		var ports []map[string]any
		for _, port := range s.Ports {
			name := port.Name
			if name == "" {
				name = fmt.Sprintf("port-%d", port.Port)
			}
			proto := strings.ToUpper(port.Protocol)
			if proto == "" {
				proto = "HTTP"
			}
			m := map[string]any{"number": port.Port, "name": name, "protocol": proto}
			if port.TargetPort != 0 {
				m["targetPort"] = port.TargetPort
			}
			ports = append(ports, m)
		}
		doc, err := yaml.Marshal(map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "ServiceEntry",
			"metadata":   map[string]any{"name": s.Name, "namespace": s.Namespace},
			"spec": map[string]any{
				"hosts":            []string{s.FQDN},
				"addresses":        []string{s.VIP.String()},
				"ports":            ports,
				"location":         "MESH_INTERNAL",
				"resolution":       "STATIC",
				"workloadSelector": map[string]any{"labels": s.Selector},
			},
		})
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(doc))
	}
	for _, w := range p.Workloads {
		if w.EastWestGateway {
			doc, err := eastWestGatewayConfig(p, w)
			if err != nil {
				return nil, err
			}
			docs = append(docs, doc)
			continue
		}
		// Every local workload runs with a sidecar: label it as the
		// injector labels pods, so clients use mesh mTLS to it.
		labels := map[string]string{"security.istio.io/tlsMode": "istio"}
		for k, v := range w.Labels {
			labels[k] = v
		}
		spec := map[string]any{"address": w.IP.String(), "labels": labels}
		if w.Net.Name != "" {
			spec["network"] = w.Net.Name
		}
		if len(w.EntryPorts) > 0 {
			spec["ports"] = w.EntryPorts
		}
		if w.ServiceAccount != "" {
			spec["serviceAccount"] = w.ServiceAccount
		}
		doc, err := yaml.Marshal(map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "WorkloadEntry",
			"metadata":   map[string]any{"name": w.Name, "namespace": w.Namespace, "labels": w.Labels},
			"spec":       spec,
		})
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(doc))
	}
	return []byte("# Generated by trellis local mode: the local workloads and their services.\n" + strings.Join(docs, "---\n")), nil
}

// eastWestGatewayConfig registers an east-west gateway the way Istio finds
// one: a service labelled topology.istio.io/network with port 15443 named
// tls, whose endpoint is the gateway's address on the other network's
// bridge (as a LoadBalancer address would be).
func eastWestGatewayConfig(p *Plan, w PlacedWorkload) (string, error) {
	se, err := yaml.Marshal(map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "ServiceEntry",
		"metadata":   map[string]any{"name": w.Name, "namespace": w.Namespace, "labels": map[string]string{networkLabel: w.Net.Name}},
		"spec": map[string]any{
			"hosts":            []string{w.Name + "." + w.Namespace + ".svc." + p.Options.DomainSuffix},
			"ports":            []map[string]any{{"number": 15443, "name": "tls", "protocol": "TLS"}},
			"location":         "MESH_INTERNAL",
			"resolution":       "STATIC",
			"workloadSelector": map[string]any{"labels": map[string]string{eastWestWorkloadLabel: w.Name}},
		},
	})
	if err != nil {
		return "", err
	}
	labels := map[string]string{eastWestWorkloadLabel: w.Name}
	for k, v := range w.Labels {
		labels[k] = v
	}
	we, err := yaml.Marshal(map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "WorkloadEntry",
		"metadata":   map[string]any{"name": w.Name, "namespace": w.Namespace, "labels": w.Labels},
		"spec":       map[string]any{"address": w.ExternalIP.String(), "labels": labels, "network": w.Net.Name},
	})
	if err != nil {
		return "", err
	}
	return string(se) + "---\n" + string(we), nil
}

const (
	networkLabel = "topology.istio.io/network"
	// eastWestWorkloadLabel ties a gateway's ServiceEntry to its
	// WorkloadEntry alone.
	eastWestWorkloadLabel = "trellis.local/east-west-gateway"
)

// Hosts renders the hosts file of a workload's namespace: localhost, the
// workload's own name, and every service under its short name (for
// workloads of the same namespace), name.namespace, name.namespace.svc and
// its FQDN, all pointing at the service's VIP.
func (p *Plan) Hosts(w PlacedWorkload) string {
	var b strings.Builder
	b.WriteString("# Generated by trellis local mode for " + w.Name + "." + w.Namespace + "\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fmt.Fprintf(&b, "%s\t%s\n", w.IP, w.Name)
	svcs := append([]PlacedService(nil), p.Services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].FQDN < svcs[j].FQDN })
	for _, s := range svcs {
		names := []string{s.FQDN, s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace}
		if s.Namespace == w.Namespace {
			names = append(names, s.Name)
		}
		fmt.Fprintf(&b, "%s\t%s\n", s.VIP, strings.Join(names, " "))
	}
	return b.String()
}
