package logexpr

import (
	"fmt"
	"strconv"
	"strings"
)

// Attrs are the request attributes an expression reads.
type Attrs struct {
	Code   int    // response.code
	Method string // request.method
	MTLS   bool   // connection.mtls
	// Flagged: the request has response flags (response.flags != 0).
	Flagged bool
}

// Expr is a compiled expression. The zero value is not valid.
type Expr struct{ root node }

// Eval evaluates the expression.
func (e *Expr) Eval(a *Attrs) bool { return e.root.eval(a) }

type node struct {
	op          byte // '&', '|', 'c' (comparison), 'b' (bool attribute)
	left, right *node
	attr        string
	cmp         string
	n           int
	s           string
	b           bool
}

func (n *node) eval(a *Attrs) bool {
	switch n.op {
	case '&':
		return n.left.eval(a) && n.right.eval(a)
	case '|':
		return n.left.eval(a) || n.right.eval(a)
	case 'b':
		return a.MTLS == n.b
	}
	switch n.attr {
	case "response.code":
		return compareInt(a.Code, n.cmp, n.n)
	case "request.method":
		return (a.Method == n.s) == (n.cmp == "==")
	case "connection.mtls":
		return (a.MTLS == n.b) == (n.cmp == "==")
	case "response.flags":
		return (!a.Flagged) == (n.cmp == "==")
	}
	return false
}

func compareInt(v int, op string, n int) bool {
	switch op {
	case "==":
		return v == n
	case "!=":
		return v != n
	case "<":
		return v < n
	case "<=":
		return v <= n
	case ">":
		return v > n
	case ">=":
		return v >= n
	}
	return false
}

// Parse compiles s, or says what it cannot handle.
func Parse(s string) (*Expr, error) {
	p := &parser{toks: nil}
	if err := p.lex(s); err != nil {
		return nil, err
	}
	if len(p.toks) == 0 {
		return nil, fmt.Errorf("empty expression")
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q after the expression", p.toks[p.i])
	}
	return &Expr{root: *n}, nil
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) lex(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')':
			p.toks = append(p.toks, string(c))
			i++
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||") || strings.HasPrefix(s[i:], "==") ||
			strings.HasPrefix(s[i:], "!=") || strings.HasPrefix(s[i:], "<=") || strings.HasPrefix(s[i:], ">="):
			p.toks = append(p.toks, s[i:i+2])
			i += 2
		case c == '<' || c == '>' || c == '!':
			p.toks = append(p.toks, string(c))
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return fmt.Errorf("unterminated string at offset %d", i)
			}
			p.toks = append(p.toks, s[i:i+j+2])
			i += j + 2
		case c == '.' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] == '.' || s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			p.toks = append(p.toks, s[i:j])
			i = j
		default:
			return fmt.Errorf("unsupported character %q at offset %d; use comparisons on %s", c, i, supported)
		}
	}
	return nil
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) or() (*node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "||" {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &node{op: '|', left: l, right: r}
	}
	return l, nil
}

func (p *parser) and() (*node, error) {
	l, err := p.atom()
	if err != nil {
		return nil, err
	}
	for p.peek() == "&&" {
		p.i++
		r, err := p.atom()
		if err != nil {
			return nil, err
		}
		l = &node{op: '&', left: l, right: r}
	}
	return l, nil
}

// attrs are the supported attributes and their types.
var attrs = map[string]byte{"response.code": 'i', "request.method": 's', "connection.mtls": 'b', "response.flags": 'f'}

const supported = "response.code, request.method, connection.mtls and response.flags"

func (p *parser) atom() (*node, error) {
	t := p.peek()
	switch t {
	case "":
		return nil, fmt.Errorf("expression ends early")
	case "(":
		p.i++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		p.i++
		return n, nil
	case "!":
		p.i++
		if p.peek() != "connection.mtls" {
			return nil, fmt.Errorf("! applies only to connection.mtls")
		}
		p.i++
		return &node{op: 'b', b: false}, nil
	}
	kind, ok := attrs[t]
	if !ok {
		return nil, fmt.Errorf("%q is not supported; use comparisons on %s", t, supported)
	}
	p.i++
	op := p.peek()
	switch op {
	case "==", "!=", "<", "<=", ">", ">=":
		p.i++
	default:
		if kind == 'b' {
			return &node{op: 'b', b: true}, nil
		}
		return nil, fmt.Errorf("%s needs a comparison (==, !=, <, <=, >, >=)", t)
	}
	lit := p.peek()
	if lit == "" {
		return nil, fmt.Errorf("%s %s needs a value", t, op)
	}
	p.i++
	n := &node{op: 'c', attr: t, cmp: op}
	ordered := op != "==" && op != "!="
	switch kind {
	case 'i':
		v, err := strconv.Atoi(lit)
		if err != nil {
			return nil, fmt.Errorf("%s compares with an integer, got %s", t, lit)
		}
		n.n = v
	case 's':
		if ordered {
			return nil, fmt.Errorf("%s supports only == and !=", t)
		}
		if len(lit) < 2 || (lit[0] != '"' && lit[0] != '\'') {
			return nil, fmt.Errorf("%s compares with a quoted string, got %s", t, lit)
		}
		n.s = lit[1 : len(lit)-1]
	case 'b':
		if ordered || (lit != "true" && lit != "false") {
			return nil, fmt.Errorf("%s compares with true or false using == or !=", t)
		}
		n.b = lit == "true"
	case 'f':
		if ordered || lit != "0" {
			return nil, fmt.Errorf("%s supports only == 0 and != 0", t)
		}
	}
	return n, nil
}
