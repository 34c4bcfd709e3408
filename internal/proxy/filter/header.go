package filter

import (
	"fmt"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// HeaderMatcher is a compiled envoy.config.route.v3.HeaderMatcher, shared
// by route matching and RBAC.
type HeaderMatcher struct {
	// Name is the lower-case header name (":method", ":path" and
	// ":authority" name the pseudo-headers).
	Name         string
	kind         byte // 's'tring, 'p'resent, 'r'ange
	sm           StringMatcher
	present      bool
	lo, hi       int64
	invert       bool
	missingEmpty bool
}

func stringMatcher(s string, kind byte) *matcherv3.StringMatcher {
	switch kind {
	case 'p':
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
	case 's':
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
	case 'c':
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s}}
	case 'r':
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// CompileHeaderMatcher compiles h; path names the field in errors.
func CompileHeaderMatcher(h *routev3.HeaderMatcher, path string) (HeaderMatcher, error) {
	hm := HeaderMatcher{Name: strings.ToLower(h.GetName()), invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	if hm.Name == "" {
		return hm, fmt.Errorf("%s.name: must not be empty", path)
	}
	var err error
	switch m := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(m.StringMatch, path+".string_match")
	case *routev3.HeaderMatcher_ExactMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(stringMatcher(m.ExactMatch, 'e'), path+".exact_match")
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(stringMatcher(m.PrefixMatch, 'p'), path+".prefix_match")
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(stringMatcher(m.SuffixMatch, 's'), path+".suffix_match")
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(stringMatcher(m.ContainsMatch, 'c'), path+".contains_match")
	case *routev3.HeaderMatcher_SafeRegexMatch:
		hm.kind = 's'
		hm.sm, err = CompileStringMatcher(stringMatcher(m.SafeRegexMatch.GetRegex(), 'r'), path+".safe_regex_match")
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = 'p', m.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind, hm.lo, hm.hi = 'r', m.RangeMatch.GetStart(), m.RangeMatch.GetEnd()
	case nil:
		hm.kind, hm.present = 'p', true
	default:
		return hm, fmt.Errorf("%s: unsupported header match %T", path, m)
	}
	return hm, err
}

// Match reports whether the header's value v (ok: the header is present)
// matches.
func (h *HeaderMatcher) Match(v []byte, ok bool) bool {
	if !ok && h.missingEmpty {
		v, ok = nil, true
	}
	var m bool
	switch h.kind {
	case 'p':
		m = ok == h.present
		if !ok {
			// Envoy: a missing header never matches, even inverted, except
			// for present_match which is the presence test itself.
			return m != h.invert
		}
	case 's':
		if !ok {
			return false
		}
		m = h.sm.Match(v)
	case 'r':
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		m = err == nil && n >= h.lo && n < h.hi
	}
	return m != h.invert
}
