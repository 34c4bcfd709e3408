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
}

// NodeID is the proxy's xDS node id.
func (w PlacedWorkload) NodeID(domain string) string {
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", w.IP, w.Name, w.Namespace, w.Namespace, domain)
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
	p := &Plan{Options: o, Bridge: o.Prefix + "0", HostIP: o.Subnet.Addr().Next()}
	ip := p.HostIP
	for i := 0; i < 9; i++ {
		ip = ip.Next()
	}
	for i, w := range spec.Workloads {
		if !o.Subnet.Contains(ip) || ip == lastAddr(o.Subnet) {
			return nil, fmt.Errorf("subnet %s is too small for %d workloads", o.Subnet, len(spec.Workloads))
		}
		p.Workloads = append(p.Workloads, PlacedWorkload{
			Workload:     w,
			Namespace:    spec.namespace(w.Namespace),
			Netns:        o.Prefix + "-" + w.Name,
			HostVeth:     fmt.Sprintf("%sv%d", o.Prefix, i),
			IP:           ip,
			InboundPorts: spec.inboundPorts(w),
		})
		ip = ip.Next()
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
		// Every local workload runs with a sidecar: label it as the
		// injector labels pods, so clients use mesh mTLS to it.
		labels := map[string]string{"security.istio.io/tlsMode": "istio"}
		for k, v := range w.Labels {
			labels[k] = v
		}
		spec := map[string]any{"address": w.IP.String(), "labels": labels}
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
