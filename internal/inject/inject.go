package inject

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names and ports of what is injected (Istio's, so habits such as
// `kubectl logs -c istio-proxy` carry over).
const (
	InitContainerName  = "istio-init"
	ProxyContainerName = "istio-proxy"
	ProxyUID           = 1337
	HealthPort         = 15021 // proxy readiness (/healthz/ready)
	AgentPort          = 15020 // merged metrics and rewritten app probes
	PrometheusPort     = 15090
	OutboundPort       = 15001
	InboundPort        = 15006

	AnnotationStatus   = "sidecar.istio.io/status"
	LabelInject        = "sidecar.istio.io/inject"
	AnnotationInject   = "sidecar.istio.io/inject"
	LabelNSInjection   = "istio-injection"
	AnnotationRewrite  = "sidecar.istio.io/rewriteAppHTTPProbers"
	EnvAppProbers      = "ISTIO_KUBE_APP_PROBERS"
	EnvLabels          = "ISTIO_METAJSON_LABELS"
	annTraffic         = "traffic.sidecar.istio.io/"
	AnnIncludeIPRanges = annTraffic + "includeOutboundIPRanges"
	AnnExcludeIPRanges = annTraffic + "excludeOutboundIPRanges"
	AnnIncludeInbound  = annTraffic + "includeInboundPorts"
	AnnExcludeInbound  = annTraffic + "excludeInboundPorts"
	AnnIncludeOutPorts = annTraffic + "includeOutboundPorts"
	AnnExcludeOutPorts = annTraffic + "excludeOutboundPorts"
	AnnProxyCPU        = "sidecar.istio.io/proxyCPU"
	AnnProxyMemory     = "sidecar.istio.io/proxyMemory"
	AnnProxyCPULimit   = "sidecar.istio.io/proxyCPULimit"
	AnnProxyMemLimit   = "sidecar.istio.io/proxyMemoryLimit"
	AnnLogLevel        = "sidecar.istio.io/logLevel"
)

// alwaysExcludedInbound are the proxy's own ports, never captured inbound.
var alwaysExcludedInbound = []string{"15090", "15021", "15020"}

// Decision says whether a pod gets the sidecar and why.
type Decision struct {
	Inject bool
	Reason string
}

// Decide applies Istio's injection policy: the pod's sidecar.istio.io/inject
// label (or annotation) wins; then the namespace's istio-injection label;
// then enableNamespacesByDefault and the policy.
func Decide(cfg Config, pod *corev1.Pod, namespace string, nsLabels map[string]string) Decision {
	if pod.Annotations[AnnotationStatus] != "" {
		return Decision{false, "already injected (" + AnnotationStatus + " is set)"}
	}
	if pod.Spec.HostNetwork {
		return Decision{false, "pod uses the host network"}
	}
	if namespace == "kube-system" || namespace == "kube-public" {
		return Decision{false, "namespace " + namespace + " is never injected"}
	}
	podSays := pod.Labels[LabelInject]
	if podSays == "" {
		podSays = pod.Annotations[AnnotationInject]
	}
	switch strings.ToLower(podSays) {
	case "false", "n", "no", "off":
		return Decision{false, LabelInject + "=" + podSays + " on the pod"}
	case "true", "y", "yes", "on":
		if nsLabels[LabelNSInjection] == "disabled" {
			return Decision{false, "namespace is labelled istio-injection=disabled"}
		}
		return Decision{true, LabelInject + "=" + podSays + " on the pod"}
	}
	switch nsLabels[LabelNSInjection] {
	case "disabled":
		return Decision{false, "namespace is labelled istio-injection=disabled"}
	case "enabled":
	default:
		if !cfg.EnableNamespacesByDefault {
			return Decision{false, "namespace is not labelled istio-injection=enabled"}
		}
	}
	if cfg.Policy == "disabled" {
		return Decision{false, "injection policy is disabled and the pod does not ask for it"}
	}
	return Decision{true, "namespace is labelled istio-injection=enabled"}
}

// Status is the value of the sidecar.istio.io/status annotation.
type Status struct {
	InitContainers []string `json:"initContainers"`
	Containers     []string `json:"containers"`
	Volumes        []string `json:"volumes"`
}

// Pod returns a copy of pod with the sidecar added in the form target
// supports (see InjectSpec). It fails on annotations it cannot honour,
// naming the annotation and the fix.
func Pod(cfg Config, target Target, pod *corev1.Pod) (*corev1.Pod, error) {
	out := pod.DeepCopy()
	if err := InjectSpec(cfg, target, &out.ObjectMeta.Annotations, &out.ObjectMeta.Labels, &out.Spec, podName(pod), WorkloadName(pod)); err != nil {
		return nil, err
	}
	return out, nil
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return strings.TrimSuffix(p.GenerateName, "-")
}

// WorkloadName is the pod's controller as Istio reports it: a
// ReplicaSet's Deployment (the ReplicaSet name minus the pod-template-hash),
// else the controller's name, else the pod's.
func WorkloadName(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		}
		return o.Name
	}
	return podName(p)
}

// InjectSpec adds the sidecar to a pod spec and its metadata maps (which
// it allocates when nil). workload names the pod or template in errors;
// workloadName is the proxy's ISTIO_META_WORKLOAD_NAME.
//
// Init containers come first: istio-init, then (native form) istio-proxy
// as an init container with restartPolicy: Always and a startup probe on
// its readiness, then the pod's own init containers, as Istio orders
// them. In the fallback form istio-init follows the pod's init containers
// and istio-proxy is the first container, its postStart hook (`trellis-proxy
// wait`) holding the app containers until it is ready; with
// holdApplicationUntilProxyStarts off it goes last instead.
func InjectSpec(cfg Config, target Target, annotations, labels *map[string]string, spec *corev1.PodSpec, workload, workloadName string) error {
	if *annotations == nil {
		*annotations = map[string]string{}
	}
	if *labels == nil {
		*labels = map[string]string{}
	}
	ann := *annotations
	for _, cs := range []struct {
		field string
		list  []corev1.Container
	}{{"spec.initContainers", spec.InitContainers}, {"spec.containers", spec.Containers}} {
		for i, c := range cs.list {
			if c.Name == ProxyContainerName || c.Name == InitContainerName {
				return fmt.Errorf("%s: %s[%d].name: a container is already named %s; rename it, or set %s=false to inject nothing", workload, cs.field, i, c.Name, LabelInject)
			}
		}
	}
	for i, v := range spec.Volumes {
		if v.Name == "trellis-proxy" || v.Name == TokenVolume || v.Name == RootCertVolume {
			return fmt.Errorf("%s: spec.volumes[%d].name: a volume is already named %s; rename it, or set %s=false to inject nothing", workload, i, v.Name, LabelInject)
		}
	}
	lc, err := podLifecycle(cfg, target, ann)
	if err != nil {
		return fmt.Errorf("%s: %w", workload, err)
	}
	capture, err := captureArgs(cfg, ann)
	if err != nil {
		return fmt.Errorf("%s: %w", workload, err)
	}
	res, err := proxyResources(cfg, ann)
	if err != nil {
		return fmt.Errorf("%s: %w", workload, err)
	}
	rewrite := cfg.RewriteAppHTTPProbe
	if v, ok := ann[AnnotationRewrite]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: metadata.annotations[%s]: got %q, want true or false", workload, AnnotationRewrite, v)
		}
		rewrite = b
	}
	var probers map[string]*prober
	if rewrite {
		probers = rewriteProbes(spec)
	}
	logLevel := cfg.LogLevel
	if v := ann[AnnLogLevel]; v != "" {
		logLevel = v
	}

	appNames := make([]string, 0, len(spec.Containers))
	for _, c := range spec.Containers {
		appNames = append(appNames, c.Name)
	}
	proxy := proxyContainer(cfg, lc, res, logLevel, appNames, probers, workloadName, *labels)
	st := Status{InitContainers: []string{InitContainerName}, Containers: []string{}, Volumes: []string{"trellis-proxy", TokenVolume, RootCertVolume}}
	switch {
	case lc.native:
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		proxy.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(HealthPort)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   3,
			FailureThreshold: 600,
		}
		spec.InitContainers = append([]corev1.Container{initContainer(cfg, capture), proxy}, spec.InitContainers...)
		st.InitContainers = append(st.InitContainers, ProxyContainerName)
	case lc.hold:
		proxy.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"trellis-proxy", WaitSubcommand},
		}}}
		spec.InitContainers = append(spec.InitContainers, initContainer(cfg, capture))
		spec.Containers = append([]corev1.Container{proxy}, spec.Containers...)
		st.Containers = []string{ProxyContainerName}
	default:
		spec.InitContainers = append(spec.InitContainers, initContainer(cfg, capture))
		spec.Containers = append(spec.Containers, proxy)
		st.Containers = []string{ProxyContainerName}
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "trellis-proxy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
	spec.Volumes = append(spec.Volumes, IdentityVolumes()...)
	// The API server accepts a projected token only for a named
	// ServiceAccount; name "default" as its ServiceAccount admission
	// plugin would.
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = "default"
	}

	stJSON, _ := json.Marshal(st)
	ann[AnnotationStatus] = string(stJSON)
	if _, ok := ann["kubectl.kubernetes.io/default-container"]; !ok && len(appNames) > 0 {
		ann["kubectl.kubernetes.io/default-container"] = appNames[0]
	}
	if _, ok := ann["prometheus.io/scrape"]; !ok {
		ann["prometheus.io/scrape"] = "true"
		ann["prometheus.io/port"] = strconv.Itoa(AgentPort)
		ann["prometheus.io/path"] = "/stats/prometheus"
	}
	lb := *labels
	lb["security.istio.io/tlsMode"] = "istio"
	if _, ok := lb["service.istio.io/canonical-name"]; !ok {
		name := lb["app.kubernetes.io/name"]
		if name == "" {
			name = lb["app"]
		}
		if name == "" {
			// workload is "Kind name" from kube-inject, or the pod name.
			f := strings.Fields(workload)
			if len(f) > 0 {
				name = f[len(f)-1]
			}
		}
		if name != "" {
			lb["service.istio.io/canonical-name"] = name
		}
	}
	if _, ok := lb["service.istio.io/canonical-revision"]; !ok {
		rev := lb["app.kubernetes.io/version"]
		if rev == "" {
			rev = lb["version"]
		}
		if rev == "" {
			rev = "latest"
		}
		lb["service.istio.io/canonical-revision"] = rev
	}
	return nil
}

type capture struct {
	includeIP, excludeIP, includeIn, excludeIn, includeOut, excludeOut string
}

func captureArgs(cfg Config, ann map[string]string) (capture, error) {
	c := capture{
		includeIP: cfg.IncludeIPRanges, excludeIP: cfg.ExcludeIPRanges,
		includeIn: cfg.IncludeInboundPorts, excludeIn: cfg.ExcludeInboundPorts,
		excludeOut: cfg.ExcludeOutboundPorts,
	}
	type item struct {
		key  string
		dst  *string
		cidr bool
	}
	for _, it := range []item{
		{AnnIncludeIPRanges, &c.includeIP, true}, {AnnExcludeIPRanges, &c.excludeIP, true},
		{AnnIncludeInbound, &c.includeIn, false}, {AnnExcludeInbound, &c.excludeIn, false},
		{AnnIncludeOutPorts, &c.includeOut, false}, {AnnExcludeOutPorts, &c.excludeOut, false},
	} {
		v, ok := ann[it.key]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if err := checkList(v, it.cidr); err != nil {
			return c, fmt.Errorf("metadata.annotations[%s]: %w", it.key, err)
		}
		*it.dst = v
	}
	// The proxy's own ports are never captured inbound.
	ex := splitList(c.excludeIn)
	for _, p := range alwaysExcludedInbound {
		if !containsStr(ex, p) {
			ex = append(ex, p)
		}
	}
	c.excludeIn = strings.Join(ex, ",")
	return c, nil
}

func checkList(v string, cidr bool) error {
	if v == "" || v == "*" {
		return nil
	}
	for _, p := range splitList(v) {
		if cidr {
			if _, _, err := parseCIDR(p); err != nil {
				return fmt.Errorf("%q is not a CIDR; want e.g. 10.0.0.0/8, comma separated, or *", p)
			}
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port; want 1-65535, comma separated, or *", p)
		}
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func proxyResources(cfg Config, ann map[string]string) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{}
	set := func(list *corev1.ResourceList, name corev1.ResourceName, v, where string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return fmt.Errorf("%s: got %q, want a Kubernetes quantity such as 100m or 128Mi", where, v)
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	for _, k := range sortedMapKeys(cfg.Requests) {
		if err := set(&r.Requests, corev1.ResourceName(k), cfg.Requests[k], "values.global.proxy.resources.requests."+k); err != nil {
			return r, err
		}
	}
	for _, k := range sortedMapKeys(cfg.Limits) {
		if err := set(&r.Limits, corev1.ResourceName(k), cfg.Limits[k], "values.global.proxy.resources.limits."+k); err != nil {
			return r, err
		}
	}
	for _, a := range []struct {
		key  string
		list *corev1.ResourceList
		name corev1.ResourceName
	}{
		{AnnProxyCPU, &r.Requests, corev1.ResourceCPU}, {AnnProxyMemory, &r.Requests, corev1.ResourceMemory},
		{AnnProxyCPULimit, &r.Limits, corev1.ResourceCPU}, {AnnProxyMemLimit, &r.Limits, corev1.ResourceMemory},
	} {
		if v, ok := ann[a.key]; ok {
			if err := set(a.list, a.name, v, "metadata.annotations["+a.key+"]"); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

func sortedMapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func initContainer(cfg Config, c capture) corev1.Container {
	args := []string{"iptables",
		"-p", strconv.Itoa(OutboundPort), "-z", strconv.Itoa(InboundPort),
		"-u", strconv.Itoa(ProxyUID), "-m", "REDIRECT",
		"-i", c.includeIP, "-x", c.excludeIP,
		"-b", c.includeIn, "-d", c.excludeIn}
	if c.excludeOut != "" {
		args = append(args, "-o", c.excludeOut)
	}
	if c.includeOut != "" {
		args = append(args, "-q", c.includeOut)
	}
	f := false
	root := int64(0)
	return corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: corev1.PullPolicy(cfg.ImagePullPolicy),
		Command:         []string{"trellis-proxy"},
		Args:            args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("50Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &f,
			Privileged:               &cfg.Privileged,
			ReadOnlyRootFilesystem:   &f,
			RunAsUser:                &root,
			RunAsGroup:               &root,
			RunAsNonRoot:             &f,
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func proxyContainer(cfg Config, lc lifecycle, res corev1.ResourceRequirements, logLevel string, apps []string, probers map[string]*prober, workloadName string, labels map[string]string) corev1.Container {
	uid := int64(ProxyUID)
	f, t := false, true
	args := []string{"--type", "sidecar", "--xds-address", cfg.DiscoveryAddress}
	if lc.concurrency > 0 {
		args = append(args, "--concurrency", strconv.FormatInt(lc.concurrency, 10))
	}
	if logLevel != "" {
		args = append(args, "--log-level", logLevel)
	}
	args = append(args, "--drain-duration", lc.drain.String())
	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("HOST_IP", "status.hostIP"),
		{Name: "ISTIO_META_WORKLOAD_NAME", Value: workloadName},
		{Name: "ISTIO_META_CLUSTER_ID", Value: cfg.ClusterID},
		{Name: "ISTIO_META_MESH_ID", Value: cfg.MeshID},
		{Name: "ISTIO_META_INTERCEPTION_MODE", Value: "REDIRECT"},
		{Name: "ISTIO_META_APP_CONTAINERS", Value: strings.Join(apps, ",")},
	}
	env = append(env, cfg.IdentityEnv()...)
	// The pod's labels as known at admission (Istio's ISTIO_METAJSON_LABELS):
	// the proxy puts them in its node metadata (LABELS) for subsets and
	// telemetry.
	if lb, err := json.Marshal(labels); err == nil {
		env = append(env, corev1.EnvVar{Name: EnvLabels, Value: string(lb)})
	}
	if cfg.Network != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_META_NETWORK", Value: cfg.Network})
	}
	if len(probers) > 0 {
		b, _ := json.Marshal(probers)
		env = append(env, corev1.EnvVar{Name: EnvAppProbers, Value: string(b)})
	}
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: corev1.PullPolicy(cfg.ImagePullPolicy),
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "http-envoy-prom", ContainerPort: PrometheusPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(HealthPort)}},
			PeriodSeconds:    15,
			TimeoutSeconds:   3,
			FailureThreshold: 4,
		},
		Resources: res,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &f,
			Privileged:               &cfg.Privileged,
			ReadOnlyRootFilesystem:   &t,
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			RunAsNonRoot:             &t,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts:             append([]corev1.VolumeMount{{Name: "trellis-proxy", MountPath: "/var/run/trellis"}}, IdentityMounts()...),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}
