package shift

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
)

// FileApplier rewrites a VirtualService held in the YAML files of a config
// directory (trellisd's --config-dir). Only the weight values change; the
// rest of the file, other documents and comments included, is kept as it
// was. Each change is one rename of a complete file, so the directory
// watcher never sees a half-written file.
type FileApplier struct {
	// Dir is the config directory; files are found as trellisd finds them
	// (*.yaml, *.yml, *.json, hidden entries skipped).
	Dir string
	// DefaultNamespace is the namespace of objects without one; default
	// "default", as trellisd's.
	DefaultNamespace string
}

// Apply implements Applier.
func (a *FileApplier) Apply(_ context.Context, ref Ref, subset string) (bool, error) {
	files, err := a.files()
	if err != nil {
		return false, err
	}
	found, changed := false, false
	for _, f := range files {
		ok, ch, err := a.applyFile(f, ref, subset)
		if err != nil {
			return changed, err
		}
		found = found || ok
		changed = changed || ch
	}
	if !found {
		return false, fmt.Errorf("virtual service %s: not found in the YAML files under %s", ref, a.Dir)
	}
	return changed, nil
}

func (a *FileApplier) ns() string {
	if a.DefaultNamespace == "" {
		return "default"
	}
	return a.DefaultNamespace
}

func (a *FileApplier) files() ([]string, error) {
	var out []string
	err := filepath.WalkDir(a.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != a.Dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || strings.HasSuffix(d.Name(), "~") {
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// applyFile rewrites ref's weights in one file. found says the file holds
// ref; changed says it was rewritten.
func (a *FileApplier) applyFile(path string, ref Ref, subset string) (found, changed bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, false, err
	}
	docs := splitDocs(data)
	var out bytes.Buffer
	for i, d := range docs {
		if !d.isDoc || !a.holds(d.text, ref) {
			out.Write(d.text)
			continue
		}
		found = true
		nd, ch, err := rewriteDoc(d.text, ref, subset)
		if err != nil {
			return true, false, fmt.Errorf("%s#%d: %w", path, i+1, err)
		}
		changed = changed || ch
		out.Write(nd)
	}
	if !changed {
		return found, false, nil
	}
	if err := a.verify(out.Bytes(), path, ref, subset); err != nil {
		return true, false, err
	}
	if err := writeAtomic(path, out.Bytes()); err != nil {
		return true, false, err
	}
	return true, true, nil
}

// holds reports whether one YAML document is the VirtualService ref.
func (a *FileApplier) holds(doc []byte, ref Ref) bool {
	res, err := config.ParseWithOptions(doc, "doc", config.ParseOptions{DefaultNamespace: a.ns()})
	if err != nil {
		return false
	}
	for _, r := range append(res.Resources, res.Rejected...) {
		if r.Kind == config.KindVirtualService && r.Namespace == ref.Namespace && r.Name == ref.Name {
			return true
		}
	}
	return false
}

// verify re-parses the new file and checks that ref now sends everything
// to subset, so a bad edit is never written.
func (a *FileApplier) verify(data []byte, path string, ref Ref, subset string) error {
	res, err := config.ParseWithOptions(data, path, config.ParseOptions{DefaultNamespace: a.ns()})
	if err != nil {
		return fmt.Errorf("rewritten %s does not parse: %w", path, err)
	}
	for _, r := range res.Resources {
		if r.Kind != config.KindVirtualService || r.Namespace != ref.Namespace || r.Name != ref.Name {
			continue
		}
		vs, ok := r.Spec.(*networkingv1alpha3.VirtualService)
		if !ok {
			return fmt.Errorf("rewritten %s: virtual service %s has spec %T", path, ref, r.Spec)
		}
		for i, h := range vs.GetHttp() {
			for j, dst := range h.GetRoute() {
				want := int32(0)
				if dst.GetDestination().GetSubset() == subset {
					want = 100
				}
				if !hasSubset(h.GetRoute(), subset) {
					continue
				}
				if got := dst.GetWeight(); got != want && !(len(h.GetRoute()) == 1 && got == 0) {
					return fmt.Errorf("rewritten %s: spec.http[%d].route[%d].weight: got %d, want %d", path, i, j, got, want)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("rewritten %s: virtual service %s no longer parses: %v", path, ref, res.Errors)
}

func hasSubset(rs []*networkingv1alpha3.HTTPRouteDestination, subset string) bool {
	for _, r := range rs {
		if r.GetDestination().GetSubset() == subset {
			return true
		}
	}
	return false
}

// writeAtomic replaces path with data through a hidden temporary file in
// the same directory (the watcher skips hidden names) and a rename.
func writeAtomic(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".shift-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// chunk is a run of the original bytes: a YAML document or a separator.
type chunk struct {
	text  []byte
	isDoc bool
}

var separator = regexp.MustCompile(`^---[ \t]*(#.*)?\r?\n?$`)

// splitDocs splits a multi-document YAML file into chunks whose
// concatenation is exactly the input.
func splitDocs(data []byte) []chunk {
	var out []chunk
	start := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off + 1
		}
		if separator.Match(data[off:end]) {
			if off > start {
				out = append(out, chunk{text: data[start:off], isDoc: true})
			}
			out = append(out, chunk{text: data[off:end]})
			start = end
		}
		off = end
	}
	if start < len(data) {
		out = append(out, chunk{text: data[start:], isDoc: true})
	}
	return out
}

// weightEdit replaces one plain scalar in place, or inserts a line.
type weightEdit struct {
	line, col int // 1-based, of the value
	old, new  string
	insert    bool // new is a whole line to insert after line
}

// lastLine is the last line a block node spans; ok is false when that is
// unknowable from the node tree (multi-line scalars).
func lastLine(n *yaml.Node) (int, bool) {
	last, ok := n.Line, true
	if n.Kind == yaml.ScalarNode && (n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || strings.Contains(n.Value, "\n")) {
		ok = false
	}
	for _, c := range n.Content {
		l, cok := lastLine(c)
		ok = ok && cok
		if l > last {
			last = l
		}
	}
	return last, ok
}

// rewriteDoc sets the weights of one VirtualService document. When every
// weight to change is a plain scalar already present it edits those bytes
// only; otherwise (missing weight keys, quoted or flow-style values) it
// re-emits the document from its node tree, which keeps comments and key
// order.
func rewriteDoc(doc []byte, ref Ref, subset string) ([]byte, bool, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, false, fmt.Errorf("virtual service %s: %w", ref, err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, false, fmt.Errorf("virtual service %s: empty document", ref)
	}
	http := lookup(lookup(root.Content[0], "spec"), "http")
	if http == nil || http.Kind != yaml.SequenceNode {
		return nil, false, errNoTarget(ref, subset)
	}
	var edits []weightEdit
	surgical, matched, changed := true, false, false
	for i, h := range http.Content {
		route := lookup(h, "route")
		if route == nil || route.Kind != yaml.SequenceNode {
			continue
		}
		subsets := make([]string, len(route.Content))
		for j, d := range route.Content {
			if s := lookup(lookup(d, "destination"), "subset"); s != nil {
				subsets[j] = s.Value
			}
		}
		weights, ok, err := planRoute(subsets, subset)
		if err != nil {
			return nil, false, fmt.Errorf("virtual service %s: spec.http[%d]: %w", ref, i, err)
		}
		if !ok {
			continue
		}
		matched = true
		for j, d := range route.Content {
			want := strconv.FormatInt(weights[j], 10)
			w := lookup(d, "weight")
			if w == nil {
				if len(route.Content) == 1 {
					continue // a lone destination gets 100 % without a weight
				}
				changed = true
				if d.Style&yaml.FlowStyle != 0 || len(d.Content) == 0 {
					surgical = false
				} else {
					// A new line "weight: N" after the route entry's last
					// line, at the column of its keys.
					last, ok := lastLine(d)
					surgical = surgical && ok
					edits = append(edits, weightEdit{line: last, col: d.Content[0].Column, insert: true,
						new: strings.Repeat(" ", d.Content[0].Column-1) + "weight: " + want + "\n"})
				}
				d.Content = append(d.Content,
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "weight"},
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: want})
				continue
			}
			if n, err := strconv.ParseInt(w.Value, 10, 64); err == nil && n == weights[j] {
				continue
			}
			changed = true
			if w.Kind != yaml.ScalarNode || w.Style != 0 || d.Style&yaml.FlowStyle != 0 {
				surgical = false
			}
			edits = append(edits, weightEdit{line: w.Line, col: w.Column, old: w.Value, new: want})
			w.Value, w.Tag, w.Style = want, "!!int", 0
		}
	}
	if !matched {
		return nil, false, errNoTarget(ref, subset)
	}
	if !changed {
		return doc, false, nil
	}
	if surgical {
		if out, ok := applyEdits(doc, edits); ok {
			return out, true, nil
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, false, fmt.Errorf("virtual service %s: %w", ref, err)
	}
	if err := enc.Close(); err != nil {
		return nil, false, fmt.Errorf("virtual service %s: %w", ref, err)
	}
	return buf.Bytes(), true, nil
}

// applyEdits replaces each edit's old text at its position; ok is false if
// any position does not hold the old text (then the caller re-emits).
func applyEdits(doc []byte, edits []weightEdit) ([]byte, bool) {
	lines := bytes.SplitAfter(doc, []byte("\n"))
	// Bottom up, right to left, so earlier positions stay valid.
	sort.Slice(edits, func(i, j int) bool {
		if edits[i].line != edits[j].line {
			return edits[i].line > edits[j].line
		}
		return edits[i].col > edits[j].col
	})
	for _, e := range edits {
		if e.insert {
			if e.line < 1 || e.line > len(lines) {
				return nil, false
			}
			at := lines[e.line-1]
			if !bytes.HasSuffix(at, []byte("\n")) {
				lines[e.line-1] = append(append([]byte{}, at...), '\n')
			}
			lines = append(lines[:e.line], append([][]byte{[]byte(e.new)}, lines[e.line:]...)...)
			continue
		}
		if e.line < 1 || e.line > len(lines) {
			return nil, false
		}
		l := lines[e.line-1]
		c := e.col - 1 // yaml.v3 columns count bytes here: ASCII keys
		if c < 0 || c+len(e.old) > len(l) || string(l[c:c+len(e.old)]) != e.old {
			return nil, false
		}
		nl := make([]byte, 0, len(l)+len(e.new))
		nl = append(nl, l[:c]...)
		nl = append(nl, e.new...)
		nl = append(nl, l[c+len(e.old):]...)
		lines[e.line-1] = nl
	}
	return bytes.Join(lines, nil), true
}

// lookup returns the value of key in a mapping node, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
