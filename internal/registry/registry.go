package registry

// Protocol is a service port's application protocol, named as Istio names
// them (from ServiceEntry port protocol, or a Kubernetes port name prefix
// such as "http-" / appProtocol).
type Protocol string

const (
	HTTP    Protocol = "HTTP"
	HTTP2   Protocol = "HTTP2"
	GRPC    Protocol = "GRPC"
	HTTPS   Protocol = "HTTPS"
	TLS     Protocol = "TLS"
	TCP     Protocol = "TCP"
	Mongo   Protocol = "MONGO"
	Redis   Protocol = "REDIS"
	Unknown Protocol = "" // detected at run time (sniffed); treated as HTTP-or-TCP
)

// IsHTTP reports whether traffic on the port is routed at L7.
func (p Protocol) IsHTTP() bool { return p == HTTP || p == HTTP2 || p == GRPC }

// Resolution says how a service's endpoints are found.
type Resolution int

const (
	ResolutionStatic Resolution = iota // endpoints are IPs (EDS)
	ResolutionDNS                      // endpoints are names resolved by the proxy (STRICT_DNS)
	ResolutionNone                     // passthrough to the original destination (ORIGINAL_DST)
)

// Port is one service port.
type Port struct {
	Name     string
	Number   uint32
	Protocol Protocol
	// TargetPort is the default endpoint port for this service port when an
	// endpoint does not name one; zero means Number.
	TargetPort uint32
}

// Service is one mesh service, identified by its fully qualified hostname.
type Service struct {
	Hostname  string // "bill-service.istio-demo.svc.cluster.local", or an external host
	Name      string // short name, "bill-service"
	Namespace string
	Addresses []string // virtual IPs (ClusterIP, ServiceEntry addresses); may be empty
	// CIDRs are ServiceEntry addresses wider than one IP ("10.1.0.0/16"):
	// TCP traffic to any address in them on a service port reaches the
	// service. They are not virtual IPs (no listener, no DNS name).
	CIDRs []string
	// ExternalAddresses are where the service is reached from outside its
	// cluster's network (Kubernetes LoadBalancer ingress IPs and
	// externalIPs). A network's east-west gateway is found by them.
	ExternalAddresses []string
	Ports             []Port
	Resolution        Resolution
	// MeshExternal is true for ServiceEntry location MESH_EXTERNAL.
	MeshExternal bool
	Labels       map[string]string
	// ExportTo lists namespaces that may see the service; empty means all.
	ExportTo []string
	// Source names where the service came from, for debug output.
	Source string
}

// Port returns the port with the given number, or nil.
func (s *Service) Port(n uint32) *Port {
	for i := range s.Ports {
		if s.Ports[i].Number == n {
			return &s.Ports[i]
		}
	}
	return nil
}

// Endpoint is one instance of a service on one service port.
type Endpoint struct {
	Service     string // Service.Hostname
	ServicePort uint32 // the service port this endpoint serves
	Address     string // IP, or a DNS name for ResolutionDNS
	Port        uint32 // the port on the endpoint
	Labels      map[string]string
	// Workload identity, for telemetry and (later) mTLS.
	Workload       string // workload (deployment or WorkloadEntry) name
	Namespace      string
	ServiceAccount string
	// Locality is "region/zone/subzone"; any part may be empty.
	Locality string
	Network  string
	Cluster  string
	Weight   uint32 // zero means 1
	Healthy  bool
}

// Snapshot is an immutable view of the registry. Services are sorted by
// Hostname; Endpoints maps Hostname to its endpoints, sorted by address,
// port. Nothing in a snapshot may be altered.
type Snapshot struct {
	Services  []*Service
	Endpoints map[string][]*Endpoint
}

// Service returns the service with the hostname, or nil.
func (s *Snapshot) Service(hostname string) *Service {
	if s == nil {
		return nil
	}
	lo, hi := 0, len(s.Services)
	for lo < hi {
		m := (lo + hi) / 2
		if s.Services[m].Hostname < hostname {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(s.Services) && s.Services[lo].Hostname == hostname {
		return s.Services[lo]
	}
	return nil
}

// Source is a registry that changes over time. Snapshot must be cheap and
// safe to call concurrently. Subscribe registers fn to be called (from any
// goroutine, without locks held) after every change.
type Source interface {
	Snapshot() *Snapshot
	Subscribe(fn func())
}
