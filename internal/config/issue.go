package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Issue is one problem found in configuration: where it is (source file and
// document, resource, field path) and what is wrong. Parse errors are
// *Issue values; the validate package reports the same type.
type Issue struct {
	// Source is where the object came from: "dir/vs.yaml#1" or
	// "kube:VirtualService/ns/name". May be empty.
	Source string
	// Resource is "Kind namespace/name"; empty when the object could not be
	// identified (broken YAML, missing kind).
	Resource string
	// Field is the path of the offending field, e.g.
	// "spec.http[0].route[1].weight"; empty for the whole object.
	Field string
	// Message says what is wrong and what is allowed.
	Message string
}

// String renders the issue as
// "SOURCE RESOURCE: FIELD: MESSAGE", leaving out empty parts.
func (i Issue) String() string {
	var b strings.Builder
	if i.Source != "" {
		b.WriteString(i.Source)
	}
	if i.Resource != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(i.Resource)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if i.Field != "" {
		b.WriteString(i.Field)
		b.WriteString(": ")
	}
	b.WriteString(i.Message)
	return b.String()
}

// Error makes Issue (and *Issue) an error.
func (i Issue) Error() string { return i.String() }

// ResourceName renders a resource identity the way issues show it:
// "VirtualService istio-demo/vs-bill-service".
func ResourceName(kind, namespace, name string) string {
	switch {
	case kind == "" && name == "":
		return ""
	case namespace == "":
		return kind + " " + name
	default:
		return kind + " " + namespace + "/" + name
	}
}

// Display is the resource's identity as issues show it.
func (r *Resource) Display() string { return ResourceName(r.Kind, r.Namespace, r.Name) }

// Path builds field paths such as "spec.http[0].route[1].weight". The zero
// value is the empty path. Paths are values: each method returns a new one.
type Path string

// Field appends ".name" (or "name" at the root).
func (p Path) Field(name string) Path {
	if p == "" {
		return Path(name)
	}
	return p + Path("."+name)
}

// Index appends "[i]".
func (p Path) Index(i int) Path { return p + Path("["+strconv.Itoa(i)+"]") }

// Key appends "[key]" for a map entry.
func (p Path) Key(k string) Path { return p + Path(fmt.Sprintf("[%s]", k)) }

// String returns the path.
func (p Path) String() string { return string(p) }
