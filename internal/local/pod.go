package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/inject"
)

// PodSteps are an injected pod's containers as a kubelet runs them, for a
// workload made by FromPod: the init step (istio-init's interception
// rules), then the proxy, its readiness gate (the native sidecar's startup
// probe, or the fallback form's postStart hook), then the app; on stop the
// app first, the proxy last.
type PodSteps struct {
	// Iptables are istio-init's `trellis-proxy iptables` flags.
	Iptables []string `json:"iptables,omitempty"`
	// ProxyArgs and ProxyEnv are the istio-proxy container's arguments and
	// literal environment. The runner adds the workload's identity and
	// trellisd's address after them, as the pod's downward API would.
	ProxyArgs []string `json:"proxyArgs,omitempty"`
	ProxyEnv  []string `json:"proxyEnv,omitempty"`
	// StartupProbe is the URL inside the namespace that must answer 200
	// before the app starts (the native sidecar's startupProbe).
	StartupProbe string `json:"startupProbe,omitempty"`
	// PostStart is the proxy container's postStart command (the fallback
	// form's `trellis-proxy wait`), run inside the namespace as the
	// proxy's user; the app starts once it succeeds.
	PostStart []string `json:"postStart,omitempty"`
	// RunToCompletion marks a Job's pod (restartPolicy Never or
	// OnFailure): when the app exits, the proxy is stopped and the
	// workload ends, as with native sidecars.
	RunToCompletion bool `json:"runToCompletion,omitempty"`
	// TerminationGracePeriodSeconds bounds each stop step before SIGKILL;
	// zero means Kubernetes's 30.
	TerminationGracePeriodSeconds int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

func (s *PodSteps) grace() int64 {
	if s.TerminationGracePeriodSeconds <= 0 {
		return 30
	}
	return s.TerminationGracePeriodSeconds
}

// FromPod turns Kubernetes YAML that `trellis kube-inject` produced into
// a local spec: each Pod, Job, Deployment, StatefulSet or DaemonSet pod
// template becomes a workload run as PodSteps (its one app container's
// command runs on this host), and each Service becomes a service. Other
// kinds are skipped.
func FromPod(r io.Reader) (*Spec, error) {
	dec := utilyaml.NewYAMLReader(bufio.NewReader(r))
	spec := &Spec{}
	for doc := 0; ; doc++ {
		raw, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		path := fmt.Sprintf("document %d (%s)", doc, head.Kind)
		var (
			meta  podMeta
			tmpl  corev1.PodTemplateSpec
			isPod = true
		)
		switch head.Kind {
		case "Pod":
			var p corev1.Pod
			err = yaml.Unmarshal(raw, &p)
			meta = podMeta{p.Name, p.Namespace}
			tmpl = corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
		case "Job":
			var j batchv1.Job
			err = yaml.Unmarshal(raw, &j)
			meta, tmpl = podMeta{j.Name, j.Namespace}, j.Spec.Template
			path += ".spec.template"
		case "Deployment":
			var d appsv1.Deployment
			err = yaml.Unmarshal(raw, &d)
			meta, tmpl = podMeta{d.Name, d.Namespace}, d.Spec.Template
			path += ".spec.template"
		case "StatefulSet":
			var d appsv1.StatefulSet
			err = yaml.Unmarshal(raw, &d)
			meta, tmpl = podMeta{d.Name, d.Namespace}, d.Spec.Template
			path += ".spec.template"
		case "DaemonSet":
			var d appsv1.DaemonSet
			err = yaml.Unmarshal(raw, &d)
			meta, tmpl = podMeta{d.Name, d.Namespace}, d.Spec.Template
			path += ".spec.template"
		case "Service":
			isPod = false
			var s corev1.Service
			if err := yaml.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			svc, err := serviceFromKube(&s, path)
			if err != nil {
				return nil, err
			}
			spec.Services = append(spec.Services, svc)
		default:
			isPod = false
		}
		if !isPod {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		w, err := workloadFromPod(meta, &tmpl, path)
		if err != nil {
			return nil, err
		}
		spec.Workloads = append(spec.Workloads, w)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

type podMeta struct{ name, namespace string }

func workloadFromPod(meta podMeta, t *corev1.PodTemplateSpec, path string) (Workload, error) {
	name := meta.name
	if t.Name != "" {
		name = t.Name
	}
	w := Workload{Name: name, Namespace: meta.namespace, Labels: map[string]string{}, ServiceAccount: t.Spec.ServiceAccountName}
	if t.Namespace != "" {
		w.Namespace = t.Namespace
	}
	for k, v := range t.Labels {
		w.Labels[k] = v
	}
	steps := &PodSteps{RunToCompletion: t.Spec.RestartPolicy == corev1.RestartPolicyNever || t.Spec.RestartPolicy == corev1.RestartPolicyOnFailure}
	if g := t.Spec.TerminationGracePeriodSeconds; g != nil {
		steps.TerminationGracePeriodSeconds = *g
	}
	var proxy *corev1.Container
	var proxyPath string
	for i := range t.Spec.InitContainers {
		c := &t.Spec.InitContainers[i]
		p := fmt.Sprintf("%s.spec.initContainers[%d]", path, i)
		switch c.Name {
		case inject.InitContainerName:
			args := append(append([]string(nil), c.Command[min(1, len(c.Command)):]...), c.Args...)
			if len(args) == 0 || args[0] != "iptables" {
				return w, fmt.Errorf("%s.args: got %q, want `trellis-proxy iptables FLAGS` (re-run trellis kube-inject)", p, args)
			}
			steps.Iptables = args[1:]
		case inject.ProxyContainerName:
			proxy, proxyPath = c, p
			if c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil {
				return w, fmt.Errorf("%s.startupProbe.httpGet: a native sidecar needs its startup probe (re-run trellis kube-inject)", p)
			}
			hg := c.StartupProbe.HTTPGet
			steps.StartupProbe = fmt.Sprintf("http://127.0.0.1:%s%s", hg.Port.String(), hg.Path)
		default:
			return w, fmt.Errorf("%s: only the injected istio-init and istio-proxy run locally; remove %q or run its work in the app", p, c.Name)
		}
	}
	var apps []int
	for i := range t.Spec.Containers {
		c := &t.Spec.Containers[i]
		if c.Name == inject.ProxyContainerName {
			proxy, proxyPath = c, fmt.Sprintf("%s.spec.containers[%d]", path, i)
			if ps := c.Lifecycle; ps != nil && ps.PostStart != nil && ps.PostStart.Exec != nil {
				steps.PostStart = ps.PostStart.Exec.Command
			}
			continue
		}
		apps = append(apps, i)
	}
	if proxy == nil {
		return w, fmt.Errorf("%s.spec: no %s container: inject the pod first (trellis kube-inject -f FILE)", path, inject.ProxyContainerName)
	}
	if steps.Iptables == nil {
		return w, fmt.Errorf("%s.spec.initContainers: no %s container: inject the pod first (trellis kube-inject -f FILE)", path, inject.InitContainerName)
	}
	steps.ProxyArgs = append(append([]string(nil), proxy.Command[min(1, len(proxy.Command)):]...), proxy.Args...)
	for j, e := range proxy.Env {
		if e.ValueFrom != nil {
			continue // the pod's identity: the runner sets it
		}
		if e.Name == "" {
			return w, fmt.Errorf("%s.env[%d].name: required", proxyPath, j)
		}
		steps.ProxyEnv = append(steps.ProxyEnv, e.Name+"="+e.Value)
	}
	switch len(apps) {
	case 0:
	case 1:
		i := apps[0]
		c := &t.Spec.Containers[i]
		w.Command = append(append([]string(nil), c.Command...), c.Args...)
		if len(w.Command) == 0 {
			return w, fmt.Errorf("%s.spec.containers[%d].command: required locally (the image's entrypoint is not known here)", path, i)
		}
		for j, e := range c.Env {
			if e.ValueFrom != nil {
				return w, fmt.Errorf("%s.spec.containers[%d].env[%d].valueFrom: not supported locally; give a value", path, i, j)
			}
			w.Env = append(w.Env, e.Name+"="+e.Value)
		}
	default:
		return w, fmt.Errorf("%s.spec.containers: %d app containers; locally a workload runs one", path, len(apps))
	}
	w.Pod = steps
	return w, nil
}

// serviceFromKube converts a Kubernetes Service (numeric target ports).
func serviceFromKube(s *corev1.Service, path string) (Service, error) {
	out := Service{Name: s.Name, Namespace: s.Namespace, Selector: s.Spec.Selector}
	for i, p := range s.Spec.Ports {
		sp := ServicePort{Name: p.Name, Port: uint32(p.Port)}
		if p.TargetPort.StrVal != "" {
			return out, fmt.Errorf("%s.spec.ports[%d].targetPort: named ports are not supported locally; give the number", path, i)
		}
		sp.TargetPort = uint32(p.TargetPort.IntVal)
		switch {
		case p.AppProtocol != nil:
			sp.Protocol = strings.ToUpper(*p.AppProtocol)
		default:
			prefix, _, _ := strings.Cut(p.Name, "-")
			switch strings.ToLower(prefix) {
			case "http", "http2", "grpc", "tcp", "tls", "https", "mongo", "redis", "mysql":
				sp.Protocol = strings.ToUpper(prefix)
			}
		}
		out.Ports = append(out.Ports, sp)
	}
	return out, nil
}

// podCommand replaces a leading trellis-proxy (the image's binary) with
// the local proxy binary.
func podCommand(proxyBin string, argv []string) []string {
	out := append([]string(nil), argv...)
	if len(out) > 0 && filepath.Base(out[0]) == "trellis-proxy" {
		out[0] = proxyBin
	}
	return out
}
