package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/inject"
)

// Labels on every installed object; uninstall --purge selects by them.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "trellis"
	LabelComponent = "trellis.io/component"
)

// Names of the installed objects other packages look up.
const (
	ControlPlaneName     = "trellisd"
	InjectorConfigMap    = "trellis-sidecar-injector"
	MeshConfigMap        = "trellis"
	InjectorWebhookName  = "trellis-sidecar-injector"
	ValidatorWebhookName = "trellis-validator"
	WebhookSecret        = "trellisd-webhook-certs"
	WebhookPort          = 15017
)

// Component is one group of objects, installed and reported together.
type Component struct {
	// Name is the progress line's subject: "Trellis core", "Control plane",
	// "Ingress gateways", "Egress gateways".
	Name    string
	Objects []*unstructured.Unstructured
}

// Render returns the objects for the settings, component by component in
// install order, each component's objects sorted (CRDs and namespaces
// first). It is deterministic.
func Render(s *Settings) ([]Component, error) {
	ns := s.Values.Global.IstioNamespace
	var comps []Component
	add := func(name, label string, objs ...runtime.Object) error {
		c := Component{Name: name}
		for _, o := range objs {
			u, err := toUnstructured(o)
			if err != nil {
				return err
			}
			labels := u.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[LabelManagedBy] = ManagedBy
			labels[LabelComponent] = label
			u.SetLabels(labels)
			c.Objects = append(c.Objects, u)
		}
		sortObjects(c.Objects)
		comps = append(comps, c)
		return nil
	}

	anything := s.Components.Base.Enabled || s.Components.Pilot.Enabled || enabledCount(s.Components.IngressGateways)+enabledCount(s.Components.EgressGateways) > 0
	if !anything {
		return nil, nil
	}
	var core []runtime.Object
	if s.Components.Base.Enabled {
		for _, c := range CRDs() {
			core = append(core, c)
		}
	}
	nsLabels := map[string]string{inject.LabelNSInjection: "disabled"}
	if s.Values.Global.Network != "" {
		// Istio's way of naming a cluster's network: trellisd reads it
		// from its own namespace (and a primary from a remote's).
		nsLabels[LabelNetwork] = s.Values.Global.Network
	}
	core = append(core, &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels},
	})
	if s.Profile == "remote" || (!s.Components.Pilot.Enabled && s.Components.Base.Enabled) {
		core = append(core, ReaderRBAC(ns)...)
	}
	if !s.Components.Pilot.Enabled {
		if url := RemoteInjectionURL(s); url != "" {
			core = append(core, remoteInjector(s, url))
		}
	}
	if err := add("Trellis core", "base", core...); err != nil {
		return nil, err
	}
	if s.Components.Pilot.Enabled {
		objs, err := controlPlane(s)
		if err != nil {
			return nil, err
		}
		if err := add("Control plane", "pilot", objs...); err != nil {
			return nil, err
		}
	}
	for _, g := range []struct {
		title, label, istio string
		list                []Gateway
	}{
		{"Ingress gateways", "ingressgateway", "ingressgateway", s.Components.IngressGateways},
		{"Egress gateways", "egressgateway", "egressgateway", s.Components.EgressGateways},
	} {
		var objs []runtime.Object
		for _, gw := range g.list {
			if !gw.Enabled {
				continue
			}
			objs = append(objs, gateway(s, gw, g.istio)...)
		}
		if len(objs) == 0 {
			continue
		}
		if err := add(g.title, g.label, objs...); err != nil {
			return nil, err
		}
	}
	return comps, nil
}

func enabledCount(gs []Gateway) int {
	n := 0
	for _, g := range gs {
		if g.Enabled {
			n++
		}
	}
	return n
}

// kindOrder puts objects others depend on first.
var kindOrder = map[string]int{
	"CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 3,
	"ClusterRoleBinding": 4, "Role": 5, "RoleBinding": 6, "ConfigMap": 7, "Secret": 8,
	"Service": 9, "Deployment": 10, "PodDisruptionBudget": 11,
	"MutatingWebhookConfiguration": 12, "ValidatingWebhookConfiguration": 13,
}

func sortObjects(objs []*unstructured.Unstructured) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if kindOrder[a.GetKind()] != kindOrder[b.GetKind()] {
			return kindOrder[a.GetKind()] < kindOrder[b.GetKind()]
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}

func toUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", o, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if tpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tpl["metadata"].(map[string]any); ok {
				delete(md, "creationTimestamp")
			}
		}
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// Objects flattens components.
func Objects(comps []Component) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, c := range comps {
		out = append(out, c.Objects...)
	}
	return out
}

// YAML renders components as one multi-document stream for
// `kubectl apply -f -`.
func YAML(comps []Component) ([]byte, error) {
	var b bytes.Buffer
	for _, c := range comps {
		for _, o := range c.Objects {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			if b.Len() > 0 {
				b.WriteString("---\n")
			}
			fmt.Fprintf(&b, "# %s: %s %s\n", c.Name, o.GetKind(), o.GetName())
			b.Write(y)
		}
	}
	return b.Bytes(), nil
}

func meta(name, ns string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
}

func image(s *Settings, name string) string {
	return strings.TrimSuffix(s.Values.Global.Hub, "/") + "/" + name + ":" + s.Values.Global.Tag
}

// InjectConfig derives the sidecar injector's config from the settings.
func InjectConfig(s *Settings) inject.Config {
	p := s.Values.Global.Proxy
	c := inject.Config{
		ProxyImage:                image(s, "proxy"),
		ImagePullPolicy:           s.Values.Global.ImagePullPolicy,
		DiscoveryAddress:          ControlPlaneName + "." + s.Values.Global.IstioNamespace + ".svc:15010",
		CAAddress:                 ControlPlaneName + "." + s.Values.Global.IstioNamespace + ".svc:15012",
		IncludeIPRanges:           p.IncludeIPRanges,
		ExcludeIPRanges:           p.ExcludeIPRanges,
		IncludeInboundPorts:       p.IncludeInboundPorts,
		ExcludeInboundPorts:       p.ExcludeInboundPorts,
		ExcludeOutboundPorts:      p.ExcludeOutboundPorts,
		Concurrency:               p.Concurrency,
		LogLevel:                  p.LogLevel,
		Privileged:                p.Privileged,
		Policy:                    p.AutoInject,
		EnableNamespacesByDefault: s.Values.SidecarInjectorWebhook.EnableNamespacesByDefault,
		RewriteAppHTTPProbe:       s.Values.SidecarInjectorWebhook.RewriteAppHTTPProbe,
		Requests:                  p.Resources.Requests,
		Limits:                    p.Resources.Limits,
		ClusterID:                 ClusterName(s),
		MeshID:                    firstNonEmpty(s.Values.Global.MeshID, "cluster.local"),
		Network:                   s.Values.Global.Network,

		NativeSidecars:                  s.Values.Pilot.Env.EnableNativeSidecars,
		HoldApplicationUntilProxyStarts: s.MeshConfig.DefaultConfig.HoldApplicationUntilProxyStarts,
		TerminationDrainDuration:        s.MeshConfig.DefaultConfig.TerminationDrainDuration,
	}
	if s.MeshConfig.DefaultConfig.Concurrency > 0 && p.Concurrency == 0 {
		c.Concurrency = s.MeshConfig.DefaultConfig.Concurrency
	}
	if s.Values.Global.RemotePilotAddress != "" {
		c.DiscoveryAddress = s.Values.Global.RemotePilotAddress
		c.CAAddress = "" // the remote control plane's host, port 15012
	}
	return c
}

// LabelNetwork names a namespace's (or pod's) network, as in Istio.
const LabelNetwork = "topology.istio.io/network"

// ClusterName is this cluster's name in the mesh
// (values.global.multiCluster.clusterName, default "Kubernetes").
func ClusterName(s *Settings) string {
	return firstNonEmpty(s.Values.Global.MultiCluster.ClusterName, "Kubernetes")
}

// MeshYAML is the mesh config trellisd reads from the "trellis" ConfigMap
// (key "mesh").
func MeshYAML(s *Settings) string {
	m := map[string]any{
		"accessLogFile":         firstNonEmpty(s.MeshConfig.AccessLogFile, s.Values.Global.Proxy.AccessLogFile),
		"accessLogEncoding":     s.MeshConfig.AccessLogEncoding,
		"enableTracing":         s.MeshConfig.EnableTracing || s.Values.Global.EnableTracing,
		"rootNamespace":         s.MeshConfig.RootNamespace,
		"outboundTrafficPolicy": map[string]any{"mode": s.MeshConfig.OutboundTrafficPolicy.Mode},
		"defaultConfig":         map[string]any{"concurrency": s.MeshConfig.DefaultConfig.Concurrency, "discoveryAddress": ControlPlaneName + "." + s.Values.Global.IstioNamespace + ".svc:15010"},
		"enableAutoMtls":        s.Values.Global.MTLS.Enabled,
		"trustDomain":           "cluster.local",
	}
	b, _ := yaml.Marshal(m)
	return string(b)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func quantities(m map[string]string) corev1.ResourceList {
	if len(m) == 0 {
		return nil
	}
	out := corev1.ResourceList{}
	for k, v := range m {
		out[corev1.ResourceName(k)] = resource.MustParse(v) // checked by the schema
	}
	return out
}

func controlPlane(s *Settings) ([]runtime.Object, error) {
	ns := s.Values.Global.IstioNamespace
	labels := map[string]string{"app": ControlPlaneName, "istio": "pilot"}
	injCfg, err := json.MarshalIndent(InjectConfig(s), "", "  ")
	if err != nil {
		return nil, err
	}
	replicas := int32(s.Values.Pilot.ReplicaCount)
	t, f := true, false
	uid := int64(ProxyUIDControlPlane)
	objs := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(ControlPlaneName, ns, labels)},
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta(ControlPlaneName, "", labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces", "nodes", "endpoints", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "update"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"networking.istio.io", "security.istio.io"}, Resources: []string{"*/status"}, Verbs: []string{"get", "update", "patch"}},
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
				{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: meta(ControlPlaneName, "", labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ControlPlaneName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControlPlaneName, Namespace: ns}},
		},
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta(ControlPlaneName, ns, labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"create", "update", "patch", "delete"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(ControlPlaneName, ns, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ControlPlaneName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControlPlaneName, Namespace: ns}},
		},
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(MeshConfigMap, ns, labels),
			Data:       map[string]string{"mesh": MeshYAML(s)},
		},
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(InjectorConfigMap, ns, labels),
			Data:       map[string]string{"config": string(injCfg) + "\n"},
		},
		&corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta(ControlPlaneName, ns, labels),
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": ControlPlaneName},
				Ports: []corev1.ServicePort{
					{Name: "grpc-xds", Port: 15010, TargetPort: intstr.FromInt32(15010), Protocol: corev1.ProtocolTCP},
					{Name: "https-dns", Port: 15012, TargetPort: intstr.FromInt32(15012), Protocol: corev1.ProtocolTCP},
					{Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(WebhookPort), Protocol: corev1.ProtocolTCP},
					{Name: "http-monitoring", Port: 15014, TargetPort: intstr.FromInt32(15014), Protocol: corev1.ProtocolTCP},
				},
			},
		},
		&appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta(ControlPlaneName, ns, labels),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": ControlPlaneName}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{inject.AnnotationInject: "false"}},
					Spec: corev1.PodSpec{
						ServiceAccountName: ControlPlaneName,
						SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid},
						Containers: []corev1.Container{{
							Name:            "discovery",
							Image:           image(s, ControlPlaneName),
							ImagePullPolicy: corev1.PullPolicy(s.Values.Global.ImagePullPolicy),
							Args: []string{
								"--kube",
								"--namespace=" + ns,
								"--mesh-config=/etc/trellis/config/mesh",
								"--inject-config=/etc/trellis/inject/config",
								"--webhook-cert-dir=/etc/trellis/webhook",
								"--log-level=" + s.Values.Global.LogLevel,
								"--cluster-id=" + ClusterName(s),
							},
							Env: []corev1.EnvVar{
								{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
								{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
								{Name: "PILOT_TRACE_SAMPLING", Value: fmt.Sprint(s.Values.Pilot.TraceSampling)},
							},
							Ports: []corev1.ContainerPort{
								{Name: "grpc-xds", ContainerPort: 15010, Protocol: corev1.ProtocolTCP},
								{Name: "tls-xds", ContainerPort: 15012, Protocol: corev1.ProtocolTCP},
								{Name: "http-monitoring", ContainerPort: 15014, Protocol: corev1.ProtocolTCP},
								{Name: "https-webhook", ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
								{Name: "http-debug", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
							},
							ReadinessProbe: &corev1.Probe{
								ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
								PeriodSeconds: 3, TimeoutSeconds: 5,
							},
							Resources: corev1.ResourceRequirements{Requests: quantities(s.Values.Pilot.Resources.Requests), Limits: quantities(s.Values.Pilot.Resources.Limits)},
							SecurityContext: &corev1.SecurityContext{
								AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							},
							VolumeMounts: []corev1.VolumeMount{
								{Name: "mesh-config", MountPath: "/etc/trellis/config", ReadOnly: true},
								{Name: "inject-config", MountPath: "/etc/trellis/inject", ReadOnly: true},
								{Name: "webhook-certs", MountPath: "/etc/trellis/webhook", ReadOnly: true},
							},
						}},
						Volumes: []corev1.Volume{
							{Name: "mesh-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: MeshConfigMap}}}},
							{Name: "inject-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: InjectorConfigMap}}}},
							{Name: "webhook-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: WebhookSecret, Optional: &t}}},
						},
					},
				},
			},
		},
	}
	objs = append(objs, webhooks(s)...)
	return objs, nil
}

// ProxyUIDControlPlane is the uid trellisd runs as.
const ProxyUIDControlPlane = 1337

func webhooks(s *Settings) []runtime.Object {
	ns := s.Values.Global.IstioNamespace
	none := admv1.SideEffectClassNone
	ignore := admv1.Ignore
	timeout := int32(10)
	svc := func(path string) admv1.WebhookClientConfig {
		port := int32(443)
		return admv1.WebhookClientConfig{Service: &admv1.ServiceReference{Name: ControlPlaneName, Namespace: ns, Path: &path, Port: &port}}
	}
	hooks := injectionHooks(s, svc("/inject"))
	groups := []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}
	return []runtime.Object{
		&admv1.MutatingWebhookConfiguration{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
			ObjectMeta: meta(InjectorWebhookName, "", map[string]string{"app": "sidecar-injector"}),
			Webhooks:   hooks,
		},
		&admv1.ValidatingWebhookConfiguration{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
			ObjectMeta: meta(ValidatorWebhookName, "", map[string]string{"app": "trellisd"}),
			Webhooks: []admv1.ValidatingWebhook{{
				Name:         "validation.trellis.io",
				ClientConfig: svc("/validate"),
				Rules: []admv1.RuleWithOperations{{
					Operations: []admv1.OperationType{admv1.Create, admv1.Update},
					Rule:       admv1.Rule{APIGroups: groups, APIVersions: []string{"*"}, Resources: []string{"*"}},
				}},
				// Ignore until trellisd serves (as Istio does at install): with
				// Fail, no Istio object could be written while the control
				// plane is down. trellisd may switch it to Fail once ready.
				SideEffects: &none, FailurePolicy: &ignore,
				AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
			}},
		},
	}
}

// RemoteInjectionURL is where a remote cluster's injection webhook calls
// the primary's trellisd, as Istio's remote profile: values.istiodRemote.injectionURL,
// else https://HOST:15017 from values.global.remotePilotAddress, followed
// by values.istiodRemote.injectionPath, else
// /inject/cluster/CLUSTER/net/NETWORK (so the primary injects the remote
// cluster's name and network). Empty when neither address is set.
func RemoteInjectionURL(s *Settings) string {
	base := strings.TrimSuffix(s.Values.IstiodRemote.InjectionURL, "/")
	if base == "" && s.Values.Global.RemotePilotAddress != "" {
		host := s.Values.Global.RemotePilotAddress
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		base = "https://" + net.JoinHostPort(host, fmt.Sprint(WebhookPort))
	}
	if base == "" {
		return ""
	}
	path := s.Values.IstiodRemote.InjectionPath
	if path == "" {
		path = "/inject/cluster/" + ClusterName(s) + "/net/" + s.Values.Global.Network
		if s.Values.Global.Network == "" {
			path = "/inject/cluster/" + ClusterName(s)
		}
	}
	return base + path
}

// remoteInjector is the remote profile's injection webhook: the same
// selectors as the primary's, calling the primary's trellisd at url. Its
// caBundle is written by the primary's trellisd when it joins this
// cluster (its webhook CA).
func remoteInjector(s *Settings, url string) runtime.Object {
	return &admv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: meta(InjectorWebhookName, "", map[string]string{"app": "sidecar-injector"}),
		Webhooks:   injectionHooks(s, admv1.WebhookClientConfig{URL: &url}),
	}
}

// injectionHooks are the pod injection webhooks (namespace and object
// opt-in) calling cc.
func injectionHooks(s *Settings, cc admv1.WebhookClientConfig) []admv1.MutatingWebhook {
	none := admv1.SideEffectClassNone
	fail := admv1.Fail
	never := admv1.NeverReinvocationPolicy
	timeout := int32(10)
	podRule := []admv1.RuleWithOperations{{
		Operations: []admv1.OperationType{admv1.Create},
		Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}}
	notSystem := metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public"}}
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{inject.LabelNSInjection: "enabled"}}
	if s.Values.SidecarInjectorWebhook.EnableNamespacesByDefault {
		nsSel = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: inject.LabelNSInjection, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}, notSystem}}
	}
	mk := func(name string, nsSel, objSel *metav1.LabelSelector) admv1.MutatingWebhook {
		return admv1.MutatingWebhook{
			Name: name, ClientConfig: cc, Rules: podRule,
			NamespaceSelector: nsSel, ObjectSelector: objSel,
			SideEffects: &none, FailurePolicy: &fail, ReinvocationPolicy: &never,
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		}
	}
	hooks := []admv1.MutatingWebhook{
		mk("namespace.sidecar-injector.trellis.io", nsSel, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: inject.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}}),
	}
	if !s.Values.SidecarInjectorWebhook.EnableNamespacesByDefault {
		hooks = append(hooks, mk("object.sidecar-injector.trellis.io",
			&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: inject.LabelNSInjection, Operator: metav1.LabelSelectorOpDoesNotExist}, notSystem}},
			&metav1.LabelSelector{MatchLabels: map[string]string{inject.LabelInject: "true"}}))
	}
	return hooks
}

func gateway(s *Settings, gw Gateway, istio string) []runtime.Object {
	ns := gw.Namespace
	if ns == "" {
		ns = s.Values.Global.IstioNamespace
	}
	v := s.Values.Gateways[gw.Name]
	if v.Type == "" {
		v.Type = "ClusterIP"
	}
	replicas := int32(v.ReplicaCount)
	if replicas == 0 {
		replicas = 1
	}
	labels := map[string]string{"app": gw.Name, "istio": istio}
	uid := int64(inject.ProxyUID)
	t, f := true, false
	ports := []corev1.ServicePort{
		{Name: "status-port", Port: 15021, TargetPort: intstr.FromInt32(15021), Protocol: corev1.ProtocolTCP},
		{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443), Protocol: corev1.ProtocolTCP},
	}
	containerPorts := []corev1.ContainerPort{
		{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP},
		{Name: "status-port", ContainerPort: 15021, Protocol: corev1.ProtocolTCP},
		{ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{ContainerPort: 8443, Protocol: corev1.ProtocolTCP},
	}
	if istio == "egressgateway" {
		ports = ports[1:]
	}
	if gw.Name == EastWestGatewayName && istio == "ingressgateway" {
		// Istio's east-west gateway: found by other networks' control
		// planes from its Service's network label and its port 15443
		// named tls (at the LoadBalancer address), where it routes mesh
		// mTLS by SNI once a Gateway in AUTO_PASSTHROUGH mode selects it
		// (istio: eastwestgateway).
		labels = map[string]string{"app": gw.Name, "istio": "eastwestgateway", LabelNetwork: s.Values.Global.Network}
		ports = []corev1.ServicePort{
			{Name: "status-port", Port: 15021, TargetPort: intstr.FromInt32(15021), Protocol: corev1.ProtocolTCP},
			{Name: "tls", Port: 15443, TargetPort: intstr.FromInt32(15443), Protocol: corev1.ProtocolTCP},
		}
		containerPorts = append(containerPorts[:2], corev1.ContainerPort{ContainerPort: 15443, Protocol: corev1.ProtocolTCP})
		if s.Values.Gateways[gw.Name].Type == "" {
			v.Type = "LoadBalancer"
		}
	}
	cfg := InjectConfig(s)
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "INSTANCE_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "SERVICE_ACCOUNT", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
		{Name: "ISTIO_META_CLUSTER_ID", Value: cfg.ClusterID},
		{Name: "ISTIO_META_WORKLOAD_NAME", Value: gw.Name},
		{Name: inject.EnvLabels, Value: labelsJSON(labels)},
	}
	if cfg.Network != "" {
		// The gateway's network: its EDS is split by it like a sidecar's.
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_NETWORK", Value: cfg.Network})
	}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(gw.Name+"-service-account", ns, labels)},
		&corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta(gw.Name, ns, labels),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceType(v.Type), Selector: labels, Ports: ports},
		},
		&appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta(gw.Name, ns, labels),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{inject.AnnotationInject: "false", "prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}},
					Spec: corev1.PodSpec{
						ServiceAccountName: gw.Name + "-service-account",
						SecurityContext: &corev1.PodSecurityContext{
							RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &t,
							Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
						},
						Containers: []corev1.Container{{
							Name:            "istio-proxy",
							Image:           cfg.ProxyImage,
							ImagePullPolicy: corev1.PullPolicy(cfg.ImagePullPolicy),
							Args:            []string{"--type", "router", "--xds-address", cfg.DiscoveryAddress, "--log-level", cfg.LogLevel},
							Env:             append(env, cfg.IdentityEnv()...),
							Ports:           containerPorts,
							ReadinessProbe: &corev1.Probe{
								ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
								PeriodSeconds: 2, FailureThreshold: 30,
							},
							Resources: corev1.ResourceRequirements{Requests: quantities(cfg.Requests), Limits: quantities(cfg.Limits)},
							SecurityContext: &corev1.SecurityContext{
								AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t, Privileged: &f,
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							},
							VolumeMounts: inject.IdentityMounts(),
						}},
						Volumes: inject.IdentityVolumes(),
					},
				},
			},
		},
	}
}

func labelsJSON(l map[string]string) string {
	b, _ := json.Marshal(l)
	return string(b)
}

// ReaderServiceAccount is the service account (and ClusterRole) a primary
// cluster's trellisd reads a remote cluster as.
const ReaderServiceAccount = "trellis-reader"

// ReaderRBAC lets a primary cluster's trellisd read this (remote) cluster: the
// service account `trellis create-remote-secret` makes a token for, its
// ClusterRole and binding.
func ReaderRBAC(ns string) []runtime.Object {
	labels := map[string]string{"app": ReaderServiceAccount}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta("trellis-reader", ns, labels)},
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta("trellis-reader", "", labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces", "nodes", "endpoints", "secrets"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}},
				// The primary's CA reviews this cluster's workload tokens.
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				// The primary's trellisd writes its webhook CA into this
				// cluster's injection webhook (remote profile).
				{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{InjectorWebhookName}, Verbs: []string{"get", "update", "patch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: meta("trellis-reader", "", labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "trellis-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "trellis-reader", Namespace: ns}},
		},
	}
}
