package demo

import (
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// object is one resource of a manifest, as kubectl would store it.
type object struct {
	Kind, Namespace, Name string
	Text                  string // the document, verbatim
}

// File is where the object lives in the config dir: one file per object,
// so that applying a manifest replaces only the objects it holds (a
// DestinationRule applied earlier stays when a later file updates the
// VirtualService beside it), as `kubectl apply` does.
func (o object) File() string {
	return fmt.Sprintf("%s-%s-%s.yaml", strings.ToLower(o.Kind), o.Namespace, o.Name)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitManifest cuts a multi-document manifest into its objects; the
// namespace defaults to "default" like kubectl's.
func splitManifest(data []byte) ([]object, error) {
	var out []object
	for i, doc := range docSep.Split(string(data), -1) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if head.Kind == "" {
			continue // comments only
		}
		if head.Metadata.Name == "" {
			return nil, fmt.Errorf("document %d: metadata.name: required", i)
		}
		ns := head.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		out = append(out, object{Kind: head.Kind, Namespace: ns, Name: head.Metadata.Name, Text: strings.TrimLeft(doc, "\n")})
	}
	return out, nil
}
