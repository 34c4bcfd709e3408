package filter

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// StringMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type StringMatcher struct {
	kind       byte // 'e'xact, 'p'refix, 's'uffix, 'c'ontains, 'r'egex
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

// CompileStringMatcher compiles m; path names the field in errors.
func CompileStringMatcher(m *matcherv3.StringMatcher, path string) (StringMatcher, error) {
	sm := StringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = 'e', p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = 'p', p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = 's', p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = 'c', p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := CompileRegex(p.SafeRegex.GetRegex(), path+".safe_regex.regex")
		if err != nil {
			return sm, err
		}
		sm.kind, sm.re = 'r', re
	default:
		return sm, fmt.Errorf("%s: unsupported string matcher %T; use exact, prefix, suffix, contains or safe_regex", path, p)
	}
	if sm.ignoreCase {
		sm.value = strings.ToLower(sm.value)
	}
	return sm, nil
}

// CompileRegex compiles an RE2 pattern anchored to the whole input, as
// Envoy's safe_regex matches the whole value.
func CompileRegex(pattern, path string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid RE2 regex %q: %w", path, pattern, err)
	}
	return re, nil
}

// Match reports whether v matches.
func (m *StringMatcher) Match(v []byte) bool {
	if m.kind == 'r' {
		return m.re.Match(v)
	}
	if m.ignoreCase {
		return m.matchFold(v)
	}
	switch m.kind {
	case 'e':
		return string(v) == m.value
	case 'p':
		return len(v) >= len(m.value) && string(v[:len(m.value)]) == m.value
	case 's':
		return len(v) >= len(m.value) && string(v[len(v)-len(m.value):]) == m.value
	case 'c':
		return bytes.Contains(v, []byte(m.value))
	}
	return false
}

func (m *StringMatcher) matchFold(v []byte) bool {
	n := len(m.value)
	switch m.kind {
	case 'e':
		return len(v) == n && foldEq(v, m.value)
	case 'p':
		return len(v) >= n && foldEq(v[:n], m.value)
	case 's':
		return len(v) >= n && foldEq(v[len(v)-n:], m.value)
	case 'c':
		for i := 0; i+n <= len(v); i++ {
			if foldEq(v[i:i+n], m.value) {
				return true
			}
		}
	}
	return false
}

// foldEq compares b to the lower-case s ignoring ASCII case.
func foldEq(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// MatchString is Match for a string.
func (m *StringMatcher) MatchString(v string) bool {
	if m.kind == 'r' {
		return m.re.MatchString(v)
	}
	if m.ignoreCase {
		return m.matchFold([]byte(v))
	}
	switch m.kind {
	case 'e':
		return v == m.value
	case 'p':
		return strings.HasPrefix(v, m.value)
	case 's':
		return strings.HasSuffix(v, m.value)
	case 'c':
		return strings.Contains(v, m.value)
	}
	return false
}
