package tagexpr

import (
	"fmt"
	"strings"
)

// Source says where a term takes its value from.
type Source uint8

// The sources a term can read.
const (
	// Literal is a quoted string; Term.Name is its value.
	Literal Source = iota
	// Header is request.headers['NAME']; Term.Name is the lower-cased
	// header name.
	Header
	// Host is request.host (the :authority / Host header).
	Host
	// Method is request.method.
	Method
	// Path is request.path, with the query string.
	Path
	// URLPath is request.url_path, the path without the query string.
	URLPath
	// Protocol is request.protocol ("HTTP/1.1", "HTTP/2").
	Protocol
	// UpstreamPeer is a field of upstream_peer, the workload the proxy
	// sent the request to (known on the client side); Term.Name is the
	// field.
	UpstreamPeer
	// DownstreamPeer is a field of downstream_peer, the workload the
	// request came from (known on the server side); Term.Name is the
	// field.
	DownstreamPeer
)

// PeerFields are the fields of upstream_peer and downstream_peer the
// proxy knows, from the peer's workload metadata.
var PeerFields = []string{"app", "cluster", "namespace", "revision", "service", "version", "workload"}

// Term is one alternative of an expression.
type Term struct {
	Source Source
	Name   string
}

// PerRequest reports whether the term's value can differ between requests
// of one series (a request attribute); literals and peers are fixed per
// series.
func (t Term) PerRequest() bool {
	switch t.Source {
	case Header, Host, Method, Path, URLPath, Protocol:
		return true
	}
	return false
}

func (t Term) String() string {
	switch t.Source {
	case Literal:
		if strings.Contains(t.Name, "'") {
			return `"` + t.Name + `"`
		}
		return "'" + t.Name + "'"
	case Header:
		return "request.headers['" + t.Name + "']"
	case Host:
		return "request.host"
	case Method:
		return "request.method"
	case Path:
		return "request.path"
	case URLPath:
		return "request.url_path"
	case Protocol:
		return "request.protocol"
	case UpstreamPeer:
		return "upstream_peer." + t.Name
	case DownstreamPeer:
		return "downstream_peer." + t.Name
	}
	return "?"
}

// Expr is a parsed tag value: its terms in order; the value is the first
// term that has one (a literal always has).
type Expr []Term

// PerRequest reports whether any term is a request attribute.
func (e Expr) PerRequest() bool {
	for _, t := range e {
		if t.PerRequest() {
			return true
		}
	}
	return false
}

// String renders the expression canonically (single quotes, " | ").
func (e Expr) String() string {
	parts := make([]string, len(e))
	for i, t := range e {
		parts[i] = t.String()
	}
	return strings.Join(parts, " | ")
}

// Supported lists the forms Parse accepts, for error messages.
const Supported = "a string literal ('text'), request.headers['NAME'], request.host, request.method, request.path, request.url_path, request.protocol, upstream_peer.FIELD or downstream_peer.FIELD (FIELD one of app, cluster, namespace, revision, service, version, workload), or alternatives joined by | (the first with a value wins, e.g. request.headers['x-user'] | 'anonymous')"

// Parse parses a tag value expression.
func Parse(s string) (Expr, error) {
	p := parser{s: s}
	var e Expr
	for {
		p.space()
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		e = append(e, t)
		p.space()
		if p.i == len(p.s) {
			break
		}
		if p.s[p.i] != '|' {
			return nil, p.errorf("unexpected %q", p.s[p.i:])
		}
		p.i++
		if p.i < len(p.s) && p.s[p.i] == '|' {
			return nil, p.errorf("|| is not supported; join alternatives with a single |")
		}
	}
	for i, t := range e[:len(e)-1] {
		if t.Source == Literal {
			return nil, fmt.Errorf("tag value %q: the literal %s always has a value, so the alternatives after it (from term %d) are never used; put it last", s, t, i+2)
		}
	}
	return e, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("tag value %q: %s; supported: %s", p.s, fmt.Sprintf(format, args...), Supported)
}

func (p *parser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) ident() string {
	j := p.i
	for j < len(p.s) {
		c := p.s[j]
		if c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			j++
			continue
		}
		break
	}
	id := p.s[p.i:j]
	p.i = j
	return id
}

func (p *parser) quoted() (string, error) {
	if p.i >= len(p.s) || p.s[p.i] != '\'' && p.s[p.i] != '"' {
		return "", p.errorf("expected a quoted string at %q", p.s[p.i:])
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", p.errorf("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.ContainsAny(v, "\\") {
		return "", p.errorf("escapes in strings are not supported")
	}
	p.i += end + 2
	return v, nil
}

func (p *parser) term() (Term, error) {
	if p.i == len(p.s) {
		if p.i == 0 {
			return Term{}, p.errorf("empty")
		}
		return Term{}, p.errorf("missing a term after |")
	}
	if c := p.s[p.i]; c == '\'' || c == '"' {
		v, err := p.quoted()
		return Term{Source: Literal, Name: v}, err
	}
	id := p.ident()
	switch id {
	case "request.headers":
		if p.i >= len(p.s) || p.s[p.i] != '[' {
			return Term{}, p.errorf("request.headers needs a header name: request.headers['NAME']")
		}
		p.i++
		name, err := p.quoted()
		if err != nil {
			return Term{}, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ']' {
			return Term{}, p.errorf("expected ] after the header name")
		}
		p.i++
		if name == "" || strings.ContainsAny(name, " \t:") {
			return Term{}, p.errorf("%q is not a header name", name)
		}
		return Term{Source: Header, Name: strings.ToLower(name)}, nil
	case "request.host":
		return Term{Source: Host}, nil
	case "request.method":
		return Term{Source: Method}, nil
	case "request.path":
		return Term{Source: Path}, nil
	case "request.url_path":
		return Term{Source: URLPath}, nil
	case "request.protocol":
		return Term{Source: Protocol}, nil
	case "":
		return Term{}, p.errorf("unexpected %q", p.s[p.i:])
	}
	for _, side := range []struct {
		prefix string
		src    Source
	}{{"upstream_peer.", UpstreamPeer}, {"downstream_peer.", DownstreamPeer}} {
		if f, ok := strings.CutPrefix(id, side.prefix); ok {
			for _, k := range PeerFields {
				if f == k {
					return Term{Source: side.src, Name: f}, nil
				}
			}
			return Term{}, p.errorf("%s has no field %q", strings.TrimSuffix(side.prefix, "."), f)
		}
	}
	return Term{}, p.errorf("%s is not supported", id)
}
