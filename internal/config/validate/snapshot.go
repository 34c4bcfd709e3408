package validate

import (
	"encoding/json"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
)

// HostSet decides whether a fully qualified hostname (or a wildcard such as
// "*.example.com") names a known service. The caller builds it from its
// registry; analyze builds it with HostsFromConfig.
type HostSet interface {
	Has(host string) bool
}

// HostFunc adapts a function to HostSet.
type HostFunc func(host string) bool

// Has calls f.
func (f HostFunc) Has(host string) bool { return f(host) }

// Hosts is a set of service hostnames; entries may be wildcards
// ("*.example.com") as ServiceEntries declare them.
type Hosts map[string]struct{}

// NewHosts returns a set holding the given hostnames.
func NewHosts(hosts ...string) Hosts {
	h := Hosts{}
	for _, x := range hosts {
		h.Add(x)
	}
	return h
}

// Add inserts a hostname (lower-cased).
func (h Hosts) Add(host string) { h[strings.ToLower(host)] = struct{}{} }

// Has reports whether host is in the set, is covered by a wildcard in the
// set, or (when host is itself a wildcard) covers some entry of the set.
func (h Hosts) Has(host string) bool {
	host = strings.ToLower(host)
	if _, ok := h[host]; ok {
		return true
	}
	for known := range h {
		if hostMatches(known, host) || hostMatches(host, known) {
			return true
		}
	}
	return false
}

// DefaultDomainSuffix is the cluster domain Istio assumes.
const DefaultDomainSuffix = "cluster.local"

// FQDN expands a short service name as Istio does: a name without dots,
// written in namespace ns, means "name.ns.svc.<domainSuffix>"; names with
// dots, wildcards and IPs are kept.
func FQDN(host, namespace, domainSuffix string) string {
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	if host == "" || strings.Contains(host, ".") || strings.HasPrefix(host, "*") || isIP(host) || strings.Contains(host, ":") {
		return host
	}
	return host + "." + namespace + ".svc." + domainSuffix
}

// HostsFromConfig collects the service hostnames a set of files declares:
// ServiceEntry hosts and Kubernetes Service objects
// (name.namespace.svc.<domainSuffix>).
func HostsFromConfig(s *config.Snapshot, kube []*config.KubeObject, domainSuffix string) Hosts {
	h := Hosts{}
	for _, r := range s.List(config.KindServiceEntry) {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, host := range se.GetHosts() {
			h.Add(FQDN(host, r.Namespace, domainSuffix))
		}
	}
	for _, o := range kube {
		if o.Kind != "Service" || o.APIVersion != "v1" || o.Name == "" {
			continue
		}
		ns := o.Namespace
		if ns == "" {
			ns = "default"
		}
		h.Add(FQDN(o.Name, ns, domainSuffix))
		// ExternalName services also answer to their external name.
		var svc struct {
			Spec struct {
				ExternalName string `json:"externalName"`
			} `json:"spec"`
		}
		if json.Unmarshal(o.Raw, &svc) == nil && svc.Spec.ExternalName != "" {
			h.Add(svc.Spec.ExternalName)
		}
	}
	return h
}

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	// DomainSuffix is the cluster domain; zero means "cluster.local".
	DomainSuffix string
}

// Snapshot reports cross-resource problems as warnings: route destinations
// naming a subset no DestinationRule defines, destinations and
// DestinationRule hosts that match no service in hosts (skipped when hosts
// is nil), gateways and delegates that do not exist. Per-resource checks are
// Resource's job and are not repeated here.
func Snapshot(s *config.Snapshot, hosts HostSet) Result {
	return SnapshotWithOptions(s, hosts, SnapshotOptions{})
}

// SnapshotWithOptions is Snapshot with options.
func SnapshotWithOptions(s *config.Snapshot, hosts HostSet, opts SnapshotOptions) Result {
	x := &crossChecker{s: s, hosts: hosts, suffix: opts.DomainSuffix, subsets: map[string][]drSubsets{}}
	if x.suffix == "" {
		x.suffix = DefaultDomainSuffix
	}
	for _, r := range s.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if !ok {
			continue
		}
		host := FQDN(dr.GetHost(), r.Namespace, x.suffix)
		var names []string
		for _, sub := range dr.GetSubsets() {
			names = append(names, sub.GetName())
		}
		x.subsets[host] = append(x.subsets[host], drSubsets{r: r, names: names})
		x.checkHost(r, Path("spec").Field("host"), host, "DestinationRule host")
	}
	delegated := map[config.Key]bool{}
	for _, r := range s.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		x.virtualService(r, vs, delegated)
	}
	for _, r := range s.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if ok && len(vs.GetHosts()) == 0 && !delegated[r.Key()] {
			x.warnf(r, "spec.hosts", "no hosts and no VirtualService delegates to it, so it routes nothing; add hosts or reference it from http[].delegate")
		}
	}
	x.res.Sort()
	return x.res
}

type drSubsets struct {
	r     *config.Resource
	names []string
}

type crossChecker struct {
	s       *config.Snapshot
	hosts   HostSet
	suffix  string
	subsets map[string][]drSubsets // FQDN -> DestinationRules for it
	res     Result
}

func (x *crossChecker) warnf(r *config.Resource, p Path, format string, args ...any) {
	c := checker{r: r}
	x.res.Warnings = append(x.res.Warnings, c.issue(p, format, args...))
}

func (x *crossChecker) checkHost(r *config.Resource, p Path, host, what string) {
	if x.hosts == nil || host == "" || isIP(host) || x.hosts.Has(host) {
		return
	}
	x.warnf(r, p, "%s %q matches no known service (no Kubernetes Service or ServiceEntry declares it)", what, host)
}

func (x *crossChecker) virtualService(r *config.Resource, vs *networking.VirtualService, delegated map[config.Key]bool) {
	spec := Path("spec")
	for i, g := range vs.GetGateways() {
		if g == "mesh" {
			continue
		}
		ns, name, found := strings.Cut(g, "/")
		if !found {
			ns, name = r.Namespace, g
		}
		if i := strings.IndexByte(name, '.'); i > 0 && !found {
			// "name.ns.svc.cluster.local" form.
			parts := strings.Split(name, ".")
			name, ns = parts[0], parts[1]
		}
		if x.s.Get(config.Key{Kind: config.KindGateway, Namespace: ns, Name: name}) == nil {
			x.warnf(r, spec.Field("gateways").Index(i), "gateway %s/%s is not defined by any Gateway", ns, name)
		}
	}
	for i, h := range vs.GetHttp() {
		p := spec.Field("http").Index(i)
		for j, d := range h.GetRoute() {
			x.destination(r, p.Field("route").Index(j).Field("destination"), d.GetDestination())
		}
		if h.GetMirror() != nil {
			x.destination(r, p.Field("mirror"), h.GetMirror())
		}
		for j, m := range h.GetMirrors() {
			x.destination(r, p.Field("mirrors").Index(j).Field("destination"), m.GetDestination())
		}
		if d := h.GetDelegate(); d != nil && d.GetName() != "" {
			ns := d.GetNamespace()
			if ns == "" {
				ns = r.Namespace
			}
			key := config.Key{Kind: config.KindVirtualService, Namespace: ns, Name: d.GetName()}
			delegated[key] = true
			target := x.s.Get(key)
			switch {
			case target == nil:
				x.warnf(r, p.Field("delegate"), "delegate VirtualService %s/%s does not exist", ns, d.GetName())
			case len(target.Spec.(*networking.VirtualService).GetHosts()) > 0:
				x.warnf(r, p.Field("delegate"), "delegate VirtualService %s/%s has hosts; a delegate must have none, so it is ignored", ns, d.GetName())
			}
		}
	}
	for i, t := range vs.GetTcp() {
		for j, d := range t.GetRoute() {
			x.destination(r, spec.Field("tcp").Index(i).Field("route").Index(j).Field("destination"), d.GetDestination())
		}
	}
	for i, t := range vs.GetTls() {
		for j, d := range t.GetRoute() {
			x.destination(r, spec.Field("tls").Index(i).Field("route").Index(j).Field("destination"), d.GetDestination())
		}
	}
}

func (x *crossChecker) destination(r *config.Resource, p Path, d *networking.Destination) {
	if d == nil || d.GetHost() == "" {
		return
	}
	host := FQDN(d.GetHost(), r.Namespace, x.suffix)
	x.checkHost(r, p.Field("host"), host, "destination host")
	if d.GetSubset() == "" {
		return
	}
	var rules []drSubsets
	for h, list := range x.subsets {
		if hostMatches(h, host) {
			rules = append(rules, list...)
		}
	}
	if len(rules) == 0 {
		x.warnf(r, p.Field("subset"), "subset %q of host %q is not defined: no DestinationRule exists for the host; add one with this subset", d.GetSubset(), host)
		return
	}
	var defined []string
	var drNames []string
	for _, dr := range rules {
		for _, n := range dr.names {
			if n == d.GetSubset() {
				return
			}
		}
		defined = append(defined, dr.names...)
		drNames = append(drNames, dr.r.Namespace+"/"+dr.r.Name)
	}
	sort.Strings(defined)
	x.warnf(r, p.Field("subset"), "subset %q of host %q is not defined by DestinationRule %s (it defines %s)", d.GetSubset(), host, strings.Join(drNames, ", "), quoteList(defined))
}

func quoteList(s []string) string {
	if len(s) == 0 {
		return "no subsets"
	}
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "\"" + x + "\""
	}
	return strings.Join(q, ", ")
}
