package serviceentry

import (
	"net/netip"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// Build is a pure function of the config snapshot: one registry.Service per
// ServiceEntry host, with endpoints from the ServiceEntry's inline endpoints
// or, when it has a workloadSelector, from the WorkloadEntries in its
// namespace whose labels match (a WorkloadGroup whose template has an
// address counts as one such WorkloadEntry). Short hosts ("bill-service") are resolved in
// the ServiceEntry's namespace with domainSuffix (empty means
// "cluster.local"). When two ServiceEntries declare the same host, the first
// by namespace/name wins. Resources whose Spec is not the expected type are
// skipped (validation reports them).
func Build(cfg *config.Snapshot, domainSuffix string) *registry.Snapshot {
	workloads := workloadEntries(cfg)
	var services []*registry.Service
	seen := map[string]bool{}
	endpoints := map[string][]*registry.Endpoint{}
	for _, r := range cfg.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok || se == nil {
			continue
		}
		for _, h := range se.GetHosts() {
			host := registry.ResolveHost(h, r.Namespace, domainSuffix)
			if host == "" || seen[host] {
				continue
			}
			seen[host] = true
			svc := service(r, se, host)
			services = append(services, svc)
			if eps := serviceEndpoints(r, se, svc, workloads[namespaceOf(r)]); len(eps) > 0 {
				endpoints[host] = eps
			}
		}
	}
	return registry.NewSnapshot(services, endpoints)
}

type workload struct {
	name string
	spec *networking.WorkloadEntry
}

func namespaceOf(r *config.Resource) string {
	if r.Namespace == "" {
		return "default"
	}
	return r.Namespace
}

func workloadEntries(cfg *config.Snapshot) map[string][]workload {
	out := map[string][]workload{}
	for _, r := range cfg.List(config.KindWorkloadEntry) {
		we, ok := r.Spec.(*networking.WorkloadEntry)
		if !ok || we == nil {
			continue
		}
		ns := namespaceOf(r)
		out[ns] = append(out[ns], workload{name: r.Name, spec: we})
	}
	// A WorkloadGroup is the template VMs register themselves from; a
	// template that already carries an address stands for one workload,
	// labelled with the group's metadata labels and the template's.
	for _, r := range cfg.List(config.KindWorkloadGroup) {
		wg, ok := r.Spec.(*networking.WorkloadGroup)
		if !ok || wg == nil || wg.GetTemplate().GetAddress() == "" {
			continue
		}
		we := proto.Clone(wg.GetTemplate()).(*networking.WorkloadEntry)
		labels := map[string]string{}
		for k, v := range wg.GetMetadata().GetLabels() {
			labels[k] = v
		}
		for k, v := range we.GetLabels() {
			labels[k] = v
		}
		we.Labels = labels
		ns := namespaceOf(r)
		out[ns] = append(out[ns], workload{name: r.Name, spec: we})
	}
	return out
}

func service(r *config.Resource, se *networking.ServiceEntry, host string) *registry.Service {
	svc := &registry.Service{
		Hostname:     host,
		Name:         shortName(host),
		Namespace:    namespaceOf(r),
		MeshExternal: se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
		Labels:       r.Labels,
		ExportTo:     append([]string(nil), se.GetExportTo()...),
		Source:       "ServiceEntry/" + namespaceOf(r) + "/" + r.Name,
	}
	switch se.GetResolution() {
	case networking.ServiceEntry_STATIC:
		svc.Resolution = registry.ResolutionStatic
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		svc.Resolution = registry.ResolutionDNS
	default:
		svc.Resolution = registry.ResolutionNone
	}
	for _, a := range se.GetAddresses() {
		if addr := vip(a); addr != "" {
			svc.Addresses = append(svc.Addresses, addr)
		} else if p, err := netip.ParsePrefix(a); err == nil {
			svc.CIDRs = append(svc.CIDRs, p.Masked().String())
		}
	}
	for _, p := range se.GetPorts() {
		svc.Ports = append(svc.Ports, registry.Port{
			Name:       p.GetName(),
			Number:     p.GetNumber(),
			Protocol:   registry.ParseProtocol(p.GetProtocol(), p.GetName()),
			TargetPort: p.GetTargetPort(),
		})
	}
	sort.SliceStable(svc.Ports, func(i, j int) bool { return svc.Ports[i].Number < svc.Ports[j].Number })
	return svc
}

// vip returns the address of a ServiceEntry "addresses" item: an IP, or a
// single-host CIDR; wider CIDRs are not virtual IPs (they go to
// Service.CIDRs).
func vip(a string) string {
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.String()
	}
	if p, err := netip.ParsePrefix(a); err == nil && p.IsSingleIP() {
		return p.Addr().String()
	}
	return ""
}

// shortName is the first DNS label of a Kubernetes-style hostname
// ("bill-service" of "bill-service.istio-demo.svc.cluster.local"), or the
// whole host otherwise.
func shortName(host string) string {
	if strings.Contains(host, ".svc.") {
		return host[:strings.IndexByte(host, '.')]
	}
	return host
}

func serviceEndpoints(r *config.Resource, se *networking.ServiceEntry, svc *registry.Service, wes []workload) []*registry.Endpoint {
	var out []*registry.Endpoint
	add := func(name string, we *networking.WorkloadEntry) {
		for _, p := range svc.Ports {
			port := p.Number
			if p.TargetPort != 0 {
				port = p.TargetPort
			}
			if n, ok := we.GetPorts()[p.Name]; ok && n != 0 {
				port = n
			}
			addr := we.GetAddress()
			if addr == "" {
				continue
			}
			out = append(out, &registry.Endpoint{
				Service:        svc.Hostname,
				ServicePort:    p.Number,
				Address:        addr,
				Port:           port,
				Labels:         we.GetLabels(),
				Workload:       name,
				Namespace:      svc.Namespace,
				ServiceAccount: we.GetServiceAccount(),
				Locality:       we.GetLocality(),
				Network:        we.GetNetwork(),
				Weight:         we.GetWeight(),
				Healthy:        true,
			})
		}
	}
	switch {
	case se.GetWorkloadSelector() != nil:
		for _, w := range wes {
			if registry.Matches(se.GetWorkloadSelector().GetLabels(), w.spec.GetLabels()) {
				add(w.name, w.spec)
			}
		}
	case len(se.GetEndpoints()) > 0:
		for _, we := range se.GetEndpoints() {
			add(r.Name, we)
		}
	case svc.Resolution == registry.ResolutionDNS && !strings.HasPrefix(svc.Hostname, "*"):
		// A DNS service with no endpoints is reached at its own name.
		add(r.Name, &networking.WorkloadEntry{Address: svc.Hostname})
	}
	return out
}
