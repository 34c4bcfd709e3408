package inject

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// prober is one rewritten probe as the proxy reads it from
// ISTIO_KUBE_APP_PROBERS: the proxy answers /app-health/C/KIND on
// AgentPort by calling the app's original probe from inside the pod.
type prober struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// rewriteProbes points every HTTP, TCP and gRPC liveness, readiness and startup probe of
// the pod's containers and its own native sidecars (init containers with
// restartPolicy: Always, the only init containers that may have probes)
// at the proxy's agent port and returns the originals keyed by their new
// paths. Probes on a port name that no container port declares are left
// alone.
func rewriteProbes(spec *corev1.PodSpec) map[string]*prober {
	out := map[string]*prober{}
	var probed []*corev1.Container
	for i := range spec.InitContainers {
		if rp := spec.InitContainers[i].RestartPolicy; rp != nil && *rp == corev1.ContainerRestartPolicyAlways {
			probed = append(probed, &spec.InitContainers[i])
		}
	}
	for i := range spec.Containers {
		probed = append(probed, &spec.Containers[i])
	}
	for _, c := range probed {
		for _, p := range []struct {
			probe *corev1.Probe
			kind  string
		}{{c.LivenessProbe, "livez"}, {c.ReadinessProbe, "readyz"}, {c.StartupProbe, "startupz"}} {
			if p.probe == nil {
				continue
			}
			path := "/app-health/" + c.Name + "/" + p.kind
			// A TCP probe would be answered by the proxy's inbound
			// capture whatever the app does; the agent dials the app.
			if ts := p.probe.TCPSocket; ts != nil {
				orig := ts.DeepCopy()
				if orig.Port.Type == intstr.String {
					n, ok := namedPort(c, orig.Port.StrVal)
					if !ok {
						continue
					}
					orig.Port = intstr.FromInt32(n)
				}
				out[path] = &prober{TCPSocket: orig, TimeoutSeconds: p.probe.TimeoutSeconds}
				p.probe.TCPSocket = nil
				p.probe.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AgentPort), Scheme: corev1.URISchemeHTTP}
				continue
			}
			// A gRPC probe (Kubernetes 1.24+) is a plain-text
			// grpc.health.v1 Health/Check the kubelet cannot make under
			// STRICT mTLS: the agent makes it and answers the HTTP probe
			// it becomes, as Istio does.
			if g := p.probe.GRPC; g != nil {
				out[path] = &prober{GRPC: g.DeepCopy(), TimeoutSeconds: p.probe.TimeoutSeconds}
				p.probe.GRPC = nil
				p.probe.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AgentPort), Scheme: corev1.URISchemeHTTP}
				continue
			}
			if p.probe.HTTPGet == nil {
				continue
			}
			orig := p.probe.HTTPGet.DeepCopy()
			if orig.Port.Type == intstr.String {
				n, ok := namedPort(c, orig.Port.StrVal)
				if !ok {
					continue
				}
				orig.Port = intstr.FromInt32(n)
			}
			out[path] = &prober{HTTPGet: orig, TimeoutSeconds: p.probe.TimeoutSeconds}
			p.probe.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AgentPort), Scheme: corev1.URISchemeHTTP}
		}
	}
	return out
}

func namedPort(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func parseCIDR(s string) (netip.Addr, int, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return p.Addr(), p.Bits(), nil
}
