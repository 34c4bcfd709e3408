package registry

import (
	"sort"
	"strings"
)

// DefaultDomainSuffix is the cluster domain used when none is configured.
const DefaultDomainSuffix = "cluster.local"

// ResolveHost turns a host as written in an Istio resource into the
// fully qualified name the registry uses, the way Istio does: a name with no
// dot is a short Kubernetes service name in the resource's namespace
// ("bill-service" in "istio-demo" becomes
// "bill-service.istio-demo.svc.cluster.local"); anything with a dot, and
// wildcards ("*", "*.example.com"), are kept as written. An empty namespace
// means "default"; an empty domainSuffix means "cluster.local". Hosts are
// lower-cased because DNS names are case-insensitive.
func ResolveHost(name, namespace, domainSuffix string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || strings.HasPrefix(name, "*") || strings.Contains(name, ".") {
		return name
	}
	if namespace == "" {
		namespace = "default"
	}
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	return name + "." + namespace + ".svc." + domainSuffix
}

// HostMatches reports whether the concrete or wildcard host pattern
// matches host, with Istio's wildcard rules: "*" matches everything and
// "*.example.com" matches any name ending in ".example.com". When host is
// itself a wildcard, pattern must cover it.
func HostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		suffix := pattern[1:] // ".example.com"
		if strings.HasPrefix(host, "*") {
			return strings.HasSuffix(host[1:], suffix)
		}
		return strings.HasSuffix(host, suffix)
	}
	return false
}

// NewSnapshot builds a snapshot from services and endpoints in any order: it
// sorts services by hostname and each endpoint list by address, port and
// service port, and drops endpoint lists with no service. The slices passed
// in become owned by the snapshot.
func NewSnapshot(services []*Service, endpoints map[string][]*Endpoint) *Snapshot {
	sort.SliceStable(services, func(i, j int) bool { return services[i].Hostname < services[j].Hostname })
	out := &Snapshot{Services: services, Endpoints: make(map[string][]*Endpoint, len(services))}
	for _, s := range services {
		eps := endpoints[s.Hostname]
		if len(eps) == 0 {
			continue
		}
		SortEndpoints(eps)
		out.Endpoints[s.Hostname] = eps
	}
	return out
}

// SortEndpoints orders endpoints by address, port, service port, then
// workload name, the order a Snapshot keeps them in.
func SortEndpoints(eps []*Endpoint) {
	sort.SliceStable(eps, func(i, j int) bool {
		a, b := eps[i], eps[j]
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if a.ServicePort != b.ServicePort {
			return a.ServicePort < b.ServicePort
		}
		return a.Workload < b.Workload
	})
}

// Merge combines snapshots from several sources (for example ServiceEntries
// and Kubernetes, or several clusters). A hostname defined by more than one
// snapshot keeps the definition from the first snapshot that has it, and its
// endpoints are the union of all snapshots' endpoints for that hostname (this
// is how one service spans clusters). Nil snapshots are skipped. The inputs
// are not altered; the result shares their Service and Endpoint values.
func Merge(snaps ...*Snapshot) *Snapshot {
	byHost := map[string]*Service{}
	var services []*Service
	endpoints := map[string][]*Endpoint{}
	for _, s := range snaps {
		if s == nil {
			continue
		}
		for _, svc := range s.Services {
			if _, ok := byHost[svc.Hostname]; !ok {
				byHost[svc.Hostname] = svc
				services = append(services, svc)
			}
		}
		for host, eps := range s.Endpoints {
			endpoints[host] = append(endpoints[host], eps...)
		}
	}
	return NewSnapshot(services, endpoints)
}

// Matches reports whether labels contain every key/value in selector. An
// empty selector matches everything.
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ParseProtocol maps a ServiceEntry/Gateway port protocol (or, when empty, a port
// name prefix such as "http-web" or "grpc") to the registry protocol, as
// Istio does. Unknown values give Unknown.
func ParseProtocol(protocol, portName string) Protocol {
	p := strings.ToUpper(protocol)
	if p == "" {
		p = strings.ToUpper(portName)
		if i := strings.IndexByte(p, '-'); i >= 0 {
			p = p[:i]
		}
	}
	switch p {
	case "HTTP", "HTTP_PROXY":
		return HTTP
	case "HTTP2", "GRPC-WEB":
		return HTTP2
	case "GRPC":
		return GRPC
	case "HTTPS":
		return HTTPS
	case "TLS":
		return TLS
	case "TCP":
		return TCP
	case "MONGO":
		return Mongo
	case "REDIS":
		return Redis
	}
	return Unknown
}
