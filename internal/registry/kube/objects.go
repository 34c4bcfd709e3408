package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The stripped objects kept in the informer stores. Each embeds only the
// metadata the store needs for its key, plus what the registry reads.
// They are never modified after the transform builds them.

type service struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	ClusterIPs   []string
	External     []string // LoadBalancer ingress IPs, then externalIPs
	Headless     bool
	ExternalName string
	Ports        []servicePort
}

type servicePort struct {
	Name        string
	Port        int32
	TargetPort  int32 // zero when the target port is named
	AppProtocol string
	UDP         bool // UDP and SCTP ports are not meshed
}

type slice struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Service   string // kubernetes.io/service-name label
	Ports     []slicePort
	Endpoints []sliceEndpoint
}

type slicePort struct {
	Name string
	Port int32
}

type sliceEndpoint struct {
	Addresses []string
	Ready     bool
	Pod       string // targetRef name when it is a Pod
	Node      string
	Zone      string
}

type pod struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	ServiceAccount string
	Node           string
	Workload       string
}

type node struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Locality string
}

type namespace struct {
	metav1.TypeMeta
	metav1.ObjectMeta
}

func (o *service) DeepCopyObject() runtime.Object   { c := *o; return &c }
func (o *slice) DeepCopyObject() runtime.Object     { c := *o; return &c }
func (o *pod) DeepCopyObject() runtime.Object       { c := *o; return &c }
func (o *node) DeepCopyObject() runtime.Object      { c := *o; return &c }
func (o *namespace) DeepCopyObject() runtime.Object { c := *o; return &c }

// slim keeps the identity and labels of an object's metadata.
func slim(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels, ResourceVersion: m.ResourceVersion}
}

func toService(s *corev1.Service) *service {
	out := &service{ObjectMeta: slim(s.ObjectMeta)}
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		out.ExternalName = strings.TrimSuffix(strings.ToLower(s.Spec.ExternalName), ".")
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		out.Headless = true
	default:
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		out.ClusterIPs = ips
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				out.External = append(out.External, in.IP)
			}
		}
		out.External = append(out.External, s.Spec.ExternalIPs...)
	}
	for _, p := range s.Spec.Ports {
		sp := servicePort{Name: p.Name, Port: p.Port, UDP: p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolSCTP}
		if p.TargetPort.IntValue() > 0 {
			sp.TargetPort = int32(p.TargetPort.IntValue())
		} else if p.TargetPort.StrVal == "" {
			sp.TargetPort = p.Port
		}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		out.Ports = append(out.Ports, sp)
	}
	return out
}

func toSlice(s *discoveryv1.EndpointSlice) *slice {
	out := &slice{ObjectMeta: slim(s.ObjectMeta), Service: s.Labels[discoveryv1.LabelServiceName]}
	out.Labels = nil // not needed once Service is read
	if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
		return out
	}
	for _, p := range s.Ports {
		if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		sp := slicePort{Port: *p.Port}
		if p.Name != nil {
			sp.Name = *p.Name
		}
		out.Ports = append(out.Ports, sp)
	}
	for _, e := range s.Endpoints {
		se := sliceEndpoint{Addresses: e.Addresses, Ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
			se.Pod = e.TargetRef.Name
		}
		if e.NodeName != nil {
			se.Node = *e.NodeName
		}
		if e.Zone != nil {
			se.Zone = *e.Zone
		}
		out.Endpoints = append(out.Endpoints, se)
	}
	return out
}

func toPod(p *corev1.Pod) *pod {
	return &pod{ObjectMeta: slim(p.ObjectMeta), ServiceAccount: p.Spec.ServiceAccountName, Node: p.Spec.NodeName, Workload: workloadName(p)}
}

// workloadName is the pod's controller as Istio reports it: a
// ReplicaSet's Deployment (the ReplicaSet name minus its hash), else the
// owner's name, else the pod's.
func workloadName(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
			if i := strings.LastIndexByte(o.Name, '-'); i > 0 {
				return o.Name[:i]
			}
		}
		if o.Kind == "Job" {
			return o.Name
		}
		return o.Name
	}
	return p.Name
}

// Topology labels for locality.
const (
	labelRegion    = "topology.kubernetes.io/region"
	labelZone      = "topology.kubernetes.io/zone"
	labelSubzone   = "topology.istio.io/subzone"
	labelNetwork   = "topology.istio.io/network"
	labelLocality  = "istio-locality" // on a pod: "region.zone.subzone"
	labelNamespace = "kubernetes.io/metadata.name"
)

func toNode(n *corev1.Node) *node {
	loc := ""
	if r, z, s := n.Labels[labelRegion], n.Labels[labelZone], n.Labels[labelSubzone]; r != "" || z != "" || s != "" {
		loc = r + "/" + z + "/" + s
	}
	return &node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}, Locality: loc}
}

func toNamespace(n *corev1.Namespace) *namespace {
	return &namespace{ObjectMeta: slim(n.ObjectMeta)}
}

// transform is the informers' transform: it converts a full object into
// its stripped form (tombstones pass through with their object converted).
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return toService(o), nil
	case *discoveryv1.EndpointSlice:
		return toSlice(o), nil
	case *corev1.Pod:
		return toPod(o), nil
	case *corev1.Node:
		return toNode(o), nil
	case *corev1.Namespace:
		return toNamespace(o), nil
	}
	return obj, nil
}
