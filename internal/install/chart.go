package install

import (
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// ChartDir is where the Helm chart lives in the repository.
const ChartDir = "manifests/charts/trellis"

// chartValue is one install setting the chart takes as a Helm value. The
// renderer runs with the placeholder, and the placeholder in its output
// becomes the value's template expression, so the chart and `trellis
// manifest generate` come from the same code.
type chartValue struct {
	setting     string // install path, as for --set
	helm        string // Helm values path
	placeholder string // unique in the rendered output; valid for the setting's check
}

var chartValues = []chartValue{
	{"values.global.hub", "global.hub", "chart-placeholder-hub.example"},
	{"values.global.tag", "global.tag", "chart-placeholder-tag"},
	{"values.global.istioNamespace", "global.istioNamespace", "chart-placeholder-namespace"},
}

// Chart returns the files of the Helm chart (paths relative to ChartDir).
// Every profile's objects are rendered by Render with the chart values'
// placeholders; each object becomes one template, guarded by the
// profiles that render it, with the placeholders turned into
// {{ .Values... }}. So `helm template --set profile=P` renders what
// `trellis manifest generate --set profile=P` does, for every value the
// chart takes.
func Chart() (map[string][]byte, error) {
	type variant struct {
		body     string
		profiles []string
	}
	type object struct {
		file     string
		variants []*variant
	}
	objects := map[string]*object{}
	defaults := map[string]string{}
	for _, profile := range Profiles() {
		plain, err := Load(Options{Set: []string{"profile=" + profile}})
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		for _, v := range chartValues {
			got := settingValue(plain, v.setting)
			if d, ok := defaults[v.setting]; ok && d != got {
				return nil, fmt.Errorf("profile %s sets %s to %q where another profile has %q; the chart has one default per value", profile, v.setting, got, d)
			}
			defaults[v.setting] = got
		}
		set := []string{"profile=" + profile}
		for _, v := range chartValues {
			set = append(set, v.setting+"="+v.placeholder)
		}
		s, err := Load(Options{Set: set})
		if err != nil {
			return nil, fmt.Errorf("profile %s with the chart placeholders: %w", profile, err)
		}
		comps, err := Render(s)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		for _, o := range Objects(comps) {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			body := string(y)
			if strings.Contains(body, "{{") || strings.Contains(body, "}}") {
				return nil, fmt.Errorf("%s %s: the rendered object contains template braces; the chart generator cannot embed it", o.GetKind(), o.GetName())
			}
			for _, v := range chartValues {
				body = strings.ReplaceAll(body, v.placeholder, "{{ .Values."+v.helm+" }}")
			}
			key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			obj := objects[key]
			if obj == nil {
				name := strings.ToLower(o.GetKind()) + "-" + o.GetName()
				for _, v := range chartValues {
					name = strings.ReplaceAll(name, v.placeholder, "install-namespace")
				}
				obj = &object{file: "templates/" + name + ".yaml"}
				objects[key] = obj
			}
			found := false
			for _, va := range obj.variants {
				if va.body == body {
					va.profiles = append(va.profiles, profile)
					found = true
					break
				}
			}
			if !found {
				obj.variants = append(obj.variants, &variant{body: body, profiles: []string{profile}})
			}
		}
	}

	files := map[string][]byte{}
	const header = "{{- /* Generated from internal/install (go test ./internal/install -run TestChartUpToDate -update); do not edit. */ -}}\n"
	for _, obj := range objects {
		if _, dup := files[obj.file]; dup {
			return nil, fmt.Errorf("two objects map to %s", obj.file)
		}
		var b strings.Builder
		b.WriteString(header)
		for i, va := range obj.variants {
			kw := "if"
			if i > 0 {
				kw = "else if"
			}
			fmt.Fprintf(&b, "{{- %s has .Values.profile (list %s) }}\n", kw, quoteList(va.profiles))
			b.WriteString(va.body)
		}
		b.WriteString("{{- end }}\n")
		files[obj.file] = []byte(b.String())
	}

	profiles := Profiles()
	files["templates/profile.yaml"] = []byte(header + fmt.Sprintf(
		"{{- if not (has .Values.profile (list %s)) }}\n{{- fail (printf \"profile: %%q is not a Trellis profile; choose one of %s\" .Values.profile) }}\n{{- end }}\n",
		quoteList(profiles), strings.Join(profiles, ", ")) +
		// The chart does not template the multi-cluster values; refuse
		// them rather than render a single-cluster install.
		"{{- $g := .Values.global | default dict }}\n" +
		"{{- if or $g.multiCluster $g.network $g.meshID }}\n" +
		"{{- fail \"global.multiCluster, global.network and global.meshID are not templated by this chart; install multi-cluster meshes with trellis install or trellis manifest generate (docs/multicluster.md)\" }}\n" +
		"{{- end }}\n")

	var values strings.Builder
	values.WriteString("# Generated from internal/install; do not edit. The chart renders what\n" +
		"# `trellis manifest generate --set profile=PROFILE` does.\n\n" +
		"# profile: " + strings.Join(profiles, ", ") + ".\n" +
		"profile: default\n")
	tree := map[string]any{}
	for _, v := range chartValues {
		parts := strings.Split(v.helm, ".")
		m := tree
		for _, p := range parts[:len(parts)-1] {
			next, _ := m[p].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = defaults[v.setting]
	}
	vy, err := yaml.Marshal(tree)
	if err != nil {
		return nil, err
	}
	values.WriteString("# The same settings as values.global.* of `trellis install --set`.\n")
	values.Write(vy)
	files["values.yaml"] = []byte(values.String())

	files["Chart.yaml"] = []byte("# Generated from internal/install; do not edit.\n" +
		"apiVersion: v2\n" +
		"name: trellis\n" +
		"description: Trellis service mesh (Istio-compatible control plane, CRDs, webhooks and gateways)\n" +
		"type: application\n" +
		"version: 0.1.0\n" +
		"appVersion: " + defaults["values.global.tag"] + "\n")
	return files, nil
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	sort.Strings(q)
	return strings.Join(q, " ")
}

// settingValue reads one of the chart's settings from s.
func settingValue(s *Settings, setting string) string {
	switch setting {
	case "values.global.hub":
		return s.Values.Global.Hub
	case "values.global.tag":
		return s.Values.Global.Tag
	case "values.global.istioNamespace":
		return s.Values.Global.IstioNamespace
	}
	panic("chart value without a reader: " + setting)
}
