package local

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Spec is what a user runs in the local mesh (`trellis local up -f FILE`).
type Spec struct {
	// Namespace of every service and workload; empty means "default".
	Namespace string     `json:"namespace,omitempty"`
	Services  []Service  `json:"services"`
	Workloads []Workload `json:"workloads"`
	// Networks, when set, put the workloads on separate networks (Istio's
	// multi-network mesh): a bridge and subnet each, with no route between
	// them, so a workload reaches another network only through that
	// network's east-west gateway. At most two. Empty: one bridge on
	// Options.Subnet, no network names.
	Networks []Network `json:"networks,omitempty"`
}

// Network is one network of a multi-network local mesh.
type Network struct {
	// Name is the topology.istio.io/network value (WorkloadEntry network,
	// the proxies' ISTIO_META_NETWORK).
	Name string `json:"name"`
	// Subnet holds the network's bridge (first address) and workloads
	// (from the 10th address on), e.g. 10.186.1.0/24.
	Subnet string `json:"subnet"`
}

// Service is a mesh service: a name, ports and the labels that select its
// workloads (a Kubernetes Service's shape).
type Service struct {
	Name string `json:"name"`
	// Namespace overrides Spec.Namespace.
	Namespace string            `json:"namespace,omitempty"`
	Ports     []ServicePort     `json:"ports"`
	Selector  map[string]string `json:"selector"`
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name string `json:"name,omitempty"`
	Port uint32 `json:"port"`
	// TargetPort is the port the app listens on; zero means Port.
	TargetPort uint32 `json:"targetPort,omitempty"`
	// Protocol is Istio's port protocol (HTTP, HTTP2, GRPC, TCP, ...);
	// empty means HTTP.
	Protocol string `json:"protocol,omitempty"`
}

// Workload is one instance: a WorkloadEntry plus the command to run.
type Workload struct {
	Name string `json:"name"`
	// Namespace overrides Spec.Namespace.
	Namespace      string            `json:"namespace,omitempty"`
	Labels         map[string]string `json:"labels"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	// Command runs the app inside the workload's namespace as an ordinary
	// user. Empty means a sidecar with no app (e.g. a client).
	Command []string `json:"command,omitempty"`
	Env     []string `json:"env,omitempty"`
	// Network names the workload's network (one of Spec.Networks); empty
	// means the first.
	Network string `json:"network,omitempty"`
	// EastWestGateway makes the workload its network's east-west gateway
	// (Istio's istio-eastwestgateway): a trellis-proxy router without
	// interception and without an app, joined to the other network's
	// bridge as well, at the address other networks reach it by (its
	// WorkloadEntry address in the generated gateway ServiceEntry,
	// labelled with its network, port 15443). A Gateway resource in
	// AUTO_PASSTHROUGH mode selecting its labels makes it route.
	EastWestGateway bool `json:"eastWestGateway,omitempty"`
	// Pod, set by FromPod (`trellis local from-pod`), runs the workload's
	// injected pod the way a kubelet would (see PodSteps); nil starts the
	// sidecar and the app side by side.
	Pod *PodSteps `json:"pod,omitempty"`
}

// LoadSpec reads a spec file, rejecting unknown fields.
func LoadSpec(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate reports every problem with its field path.
func (s *Spec) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if s.Namespace != "" && !dnsLabel.MatchString(s.Namespace) {
		bad("namespace: %q is not a DNS label (lower-case letters, digits, '-')", s.Namespace)
	}
	names := map[string]bool{}
	for i, svc := range s.Services {
		p := fmt.Sprintf("services[%d]", i)
		if !dnsLabel.MatchString(svc.Name) {
			bad("%s.name: %q is not a DNS label (lower-case letters, digits, '-')", p, svc.Name)
		}
		if svc.Namespace != "" && !dnsLabel.MatchString(svc.Namespace) {
			bad("%s.namespace: %q is not a DNS label", p, svc.Namespace)
		}
		key := "svc/" + s.namespace(svc.Namespace) + "/" + svc.Name
		if names[key] {
			bad("%s.name: duplicate service %q", p, svc.Name)
		}
		names[key] = true
		if len(svc.Ports) == 0 {
			bad("%s.ports: at least one port is required", p)
		}
		for j, port := range svc.Ports {
			if port.Port == 0 || port.Port > 65535 {
				bad("%s.ports[%d].port: got %d, want 1-65535", p, j, port.Port)
			}
			if port.TargetPort > 65535 {
				bad("%s.ports[%d].targetPort: got %d, want 1-65535", p, j, port.TargetPort)
			}
		}
		if len(svc.Selector) == 0 {
			bad("%s.selector: required, the labels of the service's workloads", p)
		}
	}
	for i, w := range s.Workloads {
		p := fmt.Sprintf("workloads[%d]", i)
		if !dnsLabel.MatchString(w.Name) {
			bad("%s.name: %q is not a DNS label (lower-case letters, digits, '-')", p, w.Name)
		}
		if w.Namespace != "" && !dnsLabel.MatchString(w.Namespace) {
			bad("%s.namespace: %q is not a DNS label", p, w.Namespace)
		}
		if names["wl/"+w.Name] {
			bad("%s.name: duplicate workload %q", p, w.Name)
		}
		names["wl/"+w.Name] = true
	}
	if len(s.Workloads) == 0 {
		bad("workloads: at least one workload is required")
	}
	nets := map[string]bool{}
	for i, n := range s.Networks {
		p := fmt.Sprintf("networks[%d]", i)
		if !dnsLabel.MatchString(n.Name) {
			bad("%s.name: %q is not a DNS label (lower-case letters, digits, '-')", p, n.Name)
		}
		if nets[n.Name] {
			bad("%s.name: duplicate network %q", p, n.Name)
		}
		nets[n.Name] = true
		if pfx, err := netip.ParsePrefix(n.Subnet); err != nil || !pfx.Addr().Is4() {
			bad("%s.subnet: %q is not an IPv4 prefix such as 10.186.1.0/24", p, n.Subnet)
		}
	}
	if len(s.Networks) > 2 {
		bad("networks: at most two (an east-west gateway joins the one other network's bridge)")
	}
	for i, w := range s.Workloads {
		p := fmt.Sprintf("workloads[%d]", i)
		if w.Network != "" && !nets[w.Network] {
			bad("%s.network: %q is not one of networks[].name", p, w.Network)
		}
		if w.EastWestGateway {
			switch {
			case len(s.Networks) < 2:
				bad("%s.eastWestGateway: needs two networks (networks[]) to join", p)
			case len(w.Command) > 0 || w.Pod != nil:
				bad("%s.eastWestGateway: a gateway runs only its proxy; remove command/pod", p)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid local mesh spec:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func (s *Spec) namespace(override string) string {
	switch {
	case override != "":
		return override
	case s.Namespace != "":
		return s.Namespace
	}
	return "default"
}

// selects reports whether labels match every selector entry.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// inboundPorts are the target ports of the services selecting w, sorted.
func (s *Spec) inboundPorts(w Workload) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, svc := range s.Services {
		if !selects(svc.Selector, w.Labels) || s.namespace(svc.Namespace) != s.namespace(w.Namespace) {
			continue
		}
		for _, p := range svc.Ports {
			t := p.TargetPort
			if t == 0 {
				t = p.Port
			}
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
