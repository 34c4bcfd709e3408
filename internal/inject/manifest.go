package inject

import (
	"bytes"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// templatePaths says where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
	"DeploymentConfig":      {"spec", "template"},
}

// Manifests is `kube-inject`: it reads multi-document YAML and returns it
// with the sidecar added to every Pod and workload pod template, except
// those that opt out (sidecar.istio.io/inject=false) or use the host
// network. Other objects pass through. The output pipes into
// `kubectl apply -f -`. target is the cluster the workloads are meant
// for (kube-inject's --kube-version): it picks the native or fallback form.
func Manifests(cfg Config, target Target, in []byte) ([]byte, error) {
	var out bytes.Buffer
	for i, doc := range splitYAML(in) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if obj == nil {
			continue
		}
		if err := injectObject(cfg, target, obj, fmt.Sprintf("document %d", i+1)); err != nil {
			return nil, err
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

func injectObject(cfg Config, target Target, obj map[string]any, where string) error {
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name != "" {
		where = kind + " " + name
	}
	if kind == "List" {
		items, _ := obj["items"].([]any)
		for j, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			if err := injectObject(cfg, target, m, fmt.Sprintf("%s items[%d]", where, j)); err != nil {
				return err
			}
		}
		return nil
	}
	if kind == "Pod" {
		var pod corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &pod); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if !wantsOffline(pod.Labels, pod.Annotations, &pod.Spec) {
			return nil
		}
		if err := InjectSpec(cfg, target, &pod.Annotations, &pod.Labels, &pod.Spec, where, WorkloadName(&pod)); err != nil {
			return err
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&pod)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		replace(obj, m)
		return nil
	}
	path, ok := templatePaths[kind]
	if !ok {
		return nil
	}
	parent := obj
	for _, p := range path[:len(path)-1] {
		next, ok := parent[p].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s: missing", where, strings.Join(path, "."))
		}
		parent = next
	}
	raw, ok := parent[path[len(path)-1]].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: %s: missing", where, strings.Join(path, "."))
	}
	var tpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &tpl); err != nil {
		return fmt.Errorf("%s: %s: %w", where, strings.Join(path, "."), err)
	}
	if !wantsOffline(tpl.Labels, tpl.Annotations, &tpl.Spec) {
		return nil
	}
	if err := InjectSpec(cfg, target, &tpl.Annotations, &tpl.Labels, &tpl.Spec, where, name); err != nil {
		return err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tpl)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	cleanMeta(m)
	parent[path[len(path)-1]] = m
	return nil
}

// wantsOffline is kube-inject's policy: inject unless the template opts
// out, uses the host network or is already injected.
func wantsOffline(labels, annotations map[string]string, spec *corev1.PodSpec) bool {
	if spec.HostNetwork || annotations[AnnotationStatus] != "" {
		return false
	}
	v := labels[LabelInject]
	if v == "" {
		v = annotations[AnnotationInject]
	}
	switch strings.ToLower(v) {
	case "false", "n", "no", "off":
		return false
	}
	return true
}

func replace(dst, src map[string]any) {
	for k := range dst {
		delete(dst, k)
	}
	for k, v := range src {
		dst[k] = v
	}
	cleanMeta(dst)
	if st, ok := dst["status"].(map[string]any); ok && len(st) == 0 {
		delete(dst, "status")
	}
}

// cleanMeta drops the "creationTimestamp: null" typed round trips add.
func cleanMeta(obj map[string]any) {
	if m, ok := obj["metadata"].(map[string]any); ok {
		if v, ok := m["creationTimestamp"]; ok && v == nil {
			delete(m, "creationTimestamp")
		}
	}
}

func splitYAML(in []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(in, []byte("\n")) {
		t := bytes.TrimRight(line, "\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(out, line...)
	}
	return out
}
