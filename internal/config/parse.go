package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// KubeObject is a non-Istio Kubernetes object found beside Istio config
// (Service, Deployment, Namespace, ...). Analyze and local mode read
// Services from them.
type KubeObject struct {
	APIVersion string
	Kind       string
	Meta
	Source string
	// Raw is the whole object as JSON; unmarshal it into the Kubernetes type.
	Raw []byte
}

// Skipped records an object Parse did not turn into a Resource.
type Skipped struct {
	Source     string
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Reason     string
}

// ParseResult is what Parse found in one input.
type ParseResult struct {
	// Resources are the Istio objects that parsed without error, in input order.
	Resources []*Resource
	// Skipped lists objects that are not Istio resources Trellis reads.
	Skipped []Skipped
	// Kube holds the skipped Kubernetes objects themselves.
	Kube []*KubeObject
	// Errors holds one *Issue per problem; an object with any error is not
	// in Resources.
	Errors []error
	// Rejected holds objects that have errors (unknown fields, say) but
	// whose spec could still be read, minus the offending fields. They
	// must never be served; validating them reports their other problems
	// in the same pass.
	Rejected []*Resource
}

// ParseOptions tune Parse.
type ParseOptions struct {
	// DefaultNamespace is used when metadata.namespace is absent; the zero
	// value means "default".
	DefaultNamespace string
}

// Parse reads multi-document YAML (or JSON) holding Istio resources, using
// the default namespace "default". source names the input ("dir/vs.yaml")
// in errors and in each Resource's Source. The returned error is non-nil
// only when the input as a whole cannot be read; per-object problems are in
// ParseResult.Errors.
func Parse(data []byte, source string) (*ParseResult, error) {
	return ParseWithOptions(data, source, ParseOptions{})
}

// ParseWithOptions is Parse with options.
func ParseWithOptions(data []byte, source string, opts ParseOptions) (*ParseResult, error) {
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	p := &parser{opts: opts, res: &ParseResult{}}
	docs := splitDocuments(data)
	n := 0
	for _, d := range docs {
		if isBlankDocument(d.text) {
			continue
		}
		n++
		src := fmt.Sprintf("%s#%d", source, n)
		p.document(d, src)
	}
	return p.res, nil
}

type parser struct {
	opts ParseOptions
	res  *ParseResult
}

func (p *parser) fail(src, resource string, field Path, format string, args ...any) {
	p.res.Errors = append(p.res.Errors, &Issue{Source: src, Resource: resource, Field: string(field), Message: fmt.Sprintf(format, args...)})
}

func (p *parser) document(d document, src string) {
	js, err := yaml.YAMLToJSONStrict(d.text)
	if err != nil {
		p.fail(src, "", "", "%s", yamlError(err, d.line))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		p.fail(src, "", "", "invalid document starting at line %d: %v", d.line, err)
		return
	}
	if v == nil {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		p.fail(src, "", "", "the document starting at line %d is a %s; want an object with apiVersion, kind, metadata and spec", d.line, jsonType(v))
		return
	}
	p.object(obj, src)
}

func (p *parser) object(obj map[string]any, src string) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, metaErr := readMeta(obj["metadata"])
	displayNS := meta.Namespace
	if displayNS == "" && meta.Name != "" {
		displayNS = p.opts.DefaultNamespace
	}
	display := ResourceName(kind, displayNS, meta.Name)

	if kind == "" {
		p.fail(src, display, "kind", "missing; want a kind such as VirtualService or DestinationRule")
		return
	}
	if apiVersion == "" {
		p.fail(src, display, "apiVersion", "missing; want e.g. networking.istio.io/v1")
		return
	}
	if strings.HasSuffix(kind, "List") && apiVersion == "v1" {
		p.list(obj, src)
		return
	}
	group, version := splitAPIVersion(apiVersion)
	info, known := kinds[kind]
	if !known {
		switch {
		case isIstioGroup(group) && unsupportedKinds[kind]:
			p.skip(obj, src, apiVersion, kind, meta, "Istio kind not supported by Trellis; ignored")
		case isIstioGroup(group) && kindNames(group) == "":
			p.skip(obj, src, apiVersion, kind, meta, "Istio API group "+group+" is not read by Trellis; ignored")
		case isIstioGroup(group):
			p.fail(src, display, "kind", "%q is not a kind of %s; accepted kinds: %s", kind, group, kindNames(group))
		default:
			p.skip(obj, src, apiVersion, kind, meta, "not an Istio resource")
		}
		return
	}
	if group != info.Group || !contains(info.Versions, version) {
		if !isIstioGroup(group) {
			// e.g. a CRD of another project that happens to share a name.
			if group != "" {
				p.skip(obj, src, apiVersion, kind, meta, "not an Istio resource")
				return
			}
		}
		p.fail(src, display, "apiVersion", "%q is not a version of %s; accepted: %s", apiVersion, kind, strings.Join(info.APIVersions(), ", "))
		return
	}
	if metaErr != nil {
		metaErr.Source, metaErr.Resource = src, display
		p.res.Errors = append(p.res.Errors, metaErr)
		return
	}
	if meta.Name == "" {
		p.fail(src, display, "metadata.name", "missing; every Istio resource needs a name")
		return
	}
	if meta.Namespace == "" {
		meta.Namespace = p.opts.DefaultNamespace
		display = ResourceName(kind, meta.Namespace, meta.Name)
	}
	before := len(p.res.Errors)
	for k := range obj {
		switch k {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			p.fail(src, display, Path(k), "unknown field; a resource has apiVersion, kind, metadata, spec and status")
		}
	}
	spec := info.New()
	rawSpec, hasSpec := obj["spec"]
	if hasSpec && rawSpec != nil {
		if _, ok := rawSpec.(map[string]any); !ok {
			p.fail(src, display, "spec", "got %s, want an object", jsonType(rawSpec))
			return
		}
		var problems []fieldProblem
		checkMessage("spec", rawSpec, spec.ProtoReflect().Descriptor(), &problems)
		for _, pr := range problems {
			p.fail(src, display, pr.path, "%s", pr.msg)
		}
		b, err := json.Marshal(rawSpec)
		if err == nil {
			err = decodeSpec(b, spec)
		}
		switch {
		case err != nil && len(problems) == 0:
			p.fail(src, display, "spec", "%s", cleanProtoError(err))
		case err != nil:
			// The schema problems already explain it.
			return
		}
	}
	if len(p.res.Errors) > before {
		// The spec could still be read (unknown fields dropped): keep it
		// so that callers can report its other problems too.
		p.res.Rejected = append(p.res.Rejected, &Resource{APIVersion: apiVersion, Kind: kind, Meta: meta, Spec: spec, Source: src})
		return
	}
	p.res.Resources = append(p.res.Resources, &Resource{
		APIVersion: apiVersion,
		Kind:       kind,
		Meta:       meta,
		Spec:       spec,
		Source:     src,
	})
}

// list expands a v1 List (as `kubectl get -o yaml` prints) into its items.
func (p *parser) list(obj map[string]any, src string) {
	items, ok := obj["items"].([]any)
	if !ok && obj["items"] != nil {
		p.fail(src, "", "items", "got %s, want a list of objects", jsonType(obj["items"]))
		return
	}
	for i, it := range items {
		m, ok := it.(map[string]any)
		isrc := fmt.Sprintf("%s[%d]", src, i)
		if !ok {
			p.fail(isrc, "", Path("items").Index(i), "got %s, want an object", jsonType(it))
			continue
		}
		p.object(m, isrc)
	}
}

func (p *parser) skip(obj map[string]any, src, apiVersion, kind string, meta Meta, reason string) {
	ns := meta.Namespace
	if ns == "" && kind != "Namespace" && !strings.HasPrefix(kind, "Cluster") {
		ns = p.opts.DefaultNamespace
		meta.Namespace = ns
	}
	p.res.Skipped = append(p.res.Skipped, Skipped{Source: src, APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: meta.Name, Reason: reason})
	raw, err := json.Marshal(obj)
	if err != nil {
		return
	}
	p.res.Kube = append(p.res.Kube, &KubeObject{APIVersion: apiVersion, Kind: kind, Meta: meta, Source: src, Raw: raw})
}

// readMeta reads the metadata fields Trellis keeps; other metadata fields
// (uid, creationTimestamp, managedFields, ...) are accepted and dropped.
func readMeta(v any) (Meta, *Issue) {
	var m Meta
	if v == nil {
		return m, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return m, &Issue{Field: "metadata", Message: fmt.Sprintf("got %s, want an object", jsonType(v))}
	}
	var bad *Issue
	str := func(key string) string {
		x, ok := obj[key]
		if !ok || x == nil {
			return ""
		}
		s, ok := x.(string)
		if !ok && bad == nil {
			bad = &Issue{Field: "metadata." + key, Message: fmt.Sprintf("got %s, want a string", jsonType(x))}
		}
		return s
	}
	strMap := func(key string) map[string]string {
		x, ok := obj[key]
		if !ok || x == nil {
			return nil
		}
		mm, ok := x.(map[string]any)
		if !ok {
			if bad == nil {
				bad = &Issue{Field: "metadata." + key, Message: fmt.Sprintf("got %s, want a map of strings", jsonType(x))}
			}
			return nil
		}
		out := make(map[string]string, len(mm))
		for k, val := range mm {
			s, ok := val.(string)
			if !ok {
				if bad == nil {
					bad = &Issue{Field: string(Path("metadata." + key).Key(k)), Message: fmt.Sprintf("got %s, want a string (quote it)", jsonType(val))}
				}
				continue
			}
			out[k] = s
		}
		return out
	}
	m.Name = str("name")
	m.Namespace = str("namespace")
	m.ResourceVersion = str("resourceVersion")
	m.Labels = strMap("labels")
	m.Annotations = strMap("annotations")
	if g, ok := obj["generation"].(json.Number); ok {
		m.Generation, _ = g.Int64()
	}
	return m, bad
}

func splitAPIVersion(av string) (group, version string) {
	if i := strings.LastIndexByte(av, '/'); i >= 0 {
		return av[:i], av[i+1:]
	}
	return "", av
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// document is one YAML document and the 1-based line it starts on.
type document struct {
	text []byte
	line int
}

// splitDocuments splits a YAML stream on "---" separator lines.
func splitDocuments(data []byte) []document {
	var docs []document
	start, startLine := 0, 1
	line := 1
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		l := bytes.TrimRight(data[i:next], "\r\n")
		if isSeparator(l) {
			docs = append(docs, document{text: data[start:i], line: startLine})
			start, startLine = next, line+1
		}
		i = next
		line++
	}
	docs = append(docs, document{text: data[start:], line: startLine})
	return docs
}

func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '#'
}

// isBlankDocument reports whether a document holds only comments, blank
// lines or a document-end marker.
func isBlankDocument(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("...")) {
			continue
		}
		return false
	}
	return true
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError renders a YAML syntax error with its line in the whole input
// (the YAML library counts from the document's start).
func yamlError(err error, docLine int) string {
	s := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("invalid YAML at line %d: %s", n+docLine-1, s[len(m[0]):])
	}
	return fmt.Sprintf("invalid YAML in the document starting at line %d: %s", docLine, strings.TrimPrefix(s, "yaml: "))
}

func cleanProtoError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "proto:")
	s = strings.ReplaceAll(s, "\u00a0", " ")
	return strings.TrimSpace(s)
}

// decodeSpec decodes a spec with the istio.io/api type's own JSON decoder
// when it has one, so that Trellis reads exactly what Istio reads (Go
// durations such as "500ms" included); protojson otherwise. That decoder
// skips unknown fields; the schema check has already reported them, with
// their paths.
func decodeSpec(b []byte, spec proto.Message) error {
	if u, ok := spec.(json.Unmarshaler); ok {
		return u.UnmarshalJSON(b)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(b, spec)
}
