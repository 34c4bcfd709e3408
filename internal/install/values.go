package install

import (
	"embed"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed profiles/*.yaml
var profileFS embed.FS

// Profiles lists the supported profile names, sorted.
func Profiles() []string {
	entries, _ := profileFS.ReadDir("profiles")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// ProfileYAML returns a profile's own file (an overlay on default).
func ProfileYAML(name string) ([]byte, error) {
	b, err := profileFS.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("profile %q: unknown; choose one of %s", name, strings.Join(Profiles(), ", "))
	}
	return b, nil
}

// Options are the user's install inputs, in increasing precedence: the
// profile (default "default"; a profile named in a file or --set wins),
// the -f files in order, then --set values in order.
type Options struct {
	Files []string // IstioOperator-style YAML files (spec: profile, components, meshConfig, values)
	Set   []string // "path=value", the path relative to spec ("values.global.proxy.includeIPRanges=10.0.0.0/8")
}

// Load merges the profile, files and --set values, checks every key
// against the accepted ones and returns the result.
func Load(o Options) (*Settings, error) {
	tree := map[string]any{}
	for _, f := range o.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		spec, err := specOf(b, f)
		if err != nil {
			return nil, err
		}
		tree = merge(tree, spec)
	}
	for _, s := range o.Set {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want path=value, e.g. --set profile=demo", s)
		}
		if k == "installPackagePath" || strings.HasPrefix(k, "spec.") {
			return nil, fmt.Errorf("--set %s: paths are relative to spec (drop the \"spec.\" prefix)", k)
		}
		if err := setPath(tree, k, v); err != nil {
			return nil, fmt.Errorf("--set %s: %w", k, err)
		}
	}
	profile := "default"
	if p, ok := tree["profile"].(string); ok && p != "" {
		profile = p
	}
	base, err := profileTree("default")
	if err != nil {
		return nil, err
	}
	if profile != "default" {
		over, err := profileTree(profile)
		if err != nil {
			return nil, err
		}
		base = merge(base, over)
	}
	tree = merge(base, tree)
	tree["profile"] = profile
	checked, errs := specSchema.check("", tree)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	s, err := decodeSettings(checked.(map[string]any))
	if err != nil {
		return nil, err
	}
	for i, g := range s.Components.IngressGateways {
		if g.Enabled && g.Name == EastWestGatewayName && s.Values.Global.Network == "" {
			return nil, fmt.Errorf("components.ingressGateways[%d]: %s is the gateway of this cluster's network; set values.global.network (e.g. --set values.global.network=network2)", i, EastWestGatewayName)
		}
	}
	return s, nil
}

func profileTree(name string) (map[string]any, error) {
	b, err := ProfileYAML(name)
	if err != nil {
		return nil, err
	}
	return specOf(b, "profile "+name)
}

// specOf reads an IstioOperator document and returns its spec.
func specOf(b []byte, where string) (map[string]any, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if k, _ := doc["kind"].(string); k != "" && k != "IstioOperator" {
		return nil, fmt.Errorf("%s: kind: got %q, want IstioOperator", where, k)
	}
	spec, ok := doc["spec"].(map[string]any)
	if !ok {
		if doc["spec"] == nil {
			return map[string]any{}, nil
		}
		return nil, fmt.Errorf("%s: spec: must be a mapping", where)
	}
	return spec, nil
}

// merge overlays b on a (both are left unmodified): maps merge key by
// key, lists of maps with a "name" merge element by name, anything else
// in b replaces a.
func merge(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, bv := range b {
		av, ok := out[k]
		if !ok {
			out[k] = bv
			continue
		}
		switch bt := bv.(type) {
		case map[string]any:
			if at, ok := av.(map[string]any); ok {
				out[k] = merge(at, bt)
				continue
			}
		case []any:
			if at, ok := av.([]any); ok && namedList(at) && namedList(bt) {
				out[k] = mergeNamed(at, bt)
				continue
			}
		}
		out[k] = bv
	}
	return out
}

func namedList(l []any) bool {
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func mergeNamed(a, b []any) []any {
	out := append([]any(nil), a...)
	for _, be := range b {
		bm := be.(map[string]any)
		found := false
		for i, ae := range out {
			am := ae.(map[string]any)
			if am["name"] == bm["name"] {
				out[i] = merge(am, bm)
				found = true
				break
			}
		}
		if !found {
			out = append(out, bm)
		}
	}
	return out
}

// setPath sets a dotted path ("values.global.proxy.concurrency",
// "components.ingressGateways[0].enabled") to a raw string; the schema
// converts it to the field's type later.
func setPath(tree map[string]any, path, value string) error {
	parts := strings.Split(path, ".")
	var cur any = tree
	for i, p := range parts {
		name, idx, hasIdx, err := splitIndex(p)
		if err != nil {
			return err
		}
		last := i == len(parts)-1
		m, ok := cur.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not a mapping", strings.Join(parts[:i], "."))
		}
		if !hasIdx {
			if last {
				m[name] = value
				return nil
			}
			next, ok := m[name].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[name] = next
			}
			cur = next
			continue
		}
		list, _ := m[name].([]any)
		for len(list) <= idx {
			list = append(list, map[string]any{})
		}
		m[name] = list
		if last {
			list[idx] = value
			return nil
		}
		if _, ok := list[idx].(map[string]any); !ok {
			list[idx] = map[string]any{}
		}
		cur = list[idx]
	}
	return nil
}

func splitIndex(p string) (name string, idx int, has bool, err error) {
	open := strings.IndexByte(p, '[')
	if open < 0 {
		return p, 0, false, nil
	}
	if !strings.HasSuffix(p, "]") {
		return "", 0, false, fmt.Errorf("%q: want name[index]", p)
	}
	n, err := strconv.Atoi(p[open+1 : len(p)-1])
	if err != nil || n < 0 || n > 64 {
		return "", 0, false, fmt.Errorf("%q: index must be a small non-negative number", p)
	}
	return p[:open], n, true, nil
}

type multiError []error

func (m multiError) Error() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func joinErrors(errs []error) error {
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) == 1 {
		return errs[0]
	}
	return multiError(errs)
}
