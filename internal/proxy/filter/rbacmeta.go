package filter

import (
	"fmt"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// The filters whose dynamic metadata RBAC metadata principals read: the
// jwt_authn filter's (the verified payload under its
// payload_in_metadata key) and Istio's istio_authn keys derived from it.
const (
	jwtAuthnMetadata  = "envoy.filters.http.jwt_authn"
	istioAuthnMetdata = "istio_authn"
)

// The values a metadata principal reads.
const (
	mdPrincipal byte = iota // request.auth.principal: iss/sub
	mdAudiences             // request.auth.audiences
	mdPresenter             // request.auth.presenter: azp
	mdClaims                // request.auth.claims[...] or the jwt_authn payload
)

// metaMatch is a compiled envoy.type.matcher.v3.MetadataMatcher.
type metaMatch struct {
	source byte
	// key is the jwt_authn payload_in_metadata key ("" for istio_authn).
	key    string
	claims []string // the claim path under request.auth.claims or key
	str    StringMatcher
	list   bool // list_match one_of: any element (or a scalar) matches
	// present is present_match: the value exists.
	present, invert bool
}

func compileMetadata(m *matcherv3.MetadataMatcher, path string) (*metaMatch, error) {
	out := &metaMatch{invert: m.GetInvert()}
	var keys []string
	for i, seg := range m.GetPath() {
		if seg.GetKey() == "" {
			return nil, fmt.Errorf("%s.path[%d].key: must be set", path, i)
		}
		keys = append(keys, seg.GetKey())
	}
	switch m.GetFilter() {
	case istioAuthnMetdata:
		if len(keys) == 0 {
			return nil, fmt.Errorf("%s.path: must name a request.auth key", path)
		}
		switch keys[0] {
		case "request.auth.principal":
			out.source = mdPrincipal
		case "request.auth.audiences":
			out.source = mdAudiences
		case "request.auth.presenter":
			out.source = mdPresenter
		case "request.auth.claims":
			out.source = mdClaims
			if len(keys) < 2 {
				return nil, fmt.Errorf("%s.path: request.auth.claims needs a claim name", path)
			}
			out.claims = keys[1:]
		default:
			return nil, fmt.Errorf("%s.path[0].key: %q is not supported; use request.auth.principal, request.auth.audiences, request.auth.presenter or request.auth.claims", path, keys[0])
		}
		if out.source != mdClaims && len(keys) > 1 {
			return nil, fmt.Errorf("%s.path: %s has no nested keys", path, keys[0])
		}
	case jwtAuthnMetadata:
		if len(keys) == 0 {
			return nil, fmt.Errorf("%s.path: must start with the provider's payload_in_metadata key", path)
		}
		out.source, out.key, out.claims = mdClaims, keys[0], keys[1:]
	default:
		return nil, fmt.Errorf("%s.filter: metadata of %q is not supported by trellis-proxy; use %s or %s", path, m.GetFilter(), istioAuthnMetdata, jwtAuthnMetadata)
	}
	v := m.GetValue()
	var err error
	switch {
	case v.GetStringMatch() != nil:
		out.str, err = CompileStringMatcher(v.GetStringMatch(), path+".value.string_match")
	case v.GetListMatch() != nil:
		sm := v.GetListMatch().GetOneOf().GetStringMatch()
		if sm == nil {
			return nil, fmt.Errorf("%s.value.list_match.one_of: only string_match is supported by trellis-proxy", path)
		}
		out.list = true
		out.str, err = CompileStringMatcher(sm, path+".value.list_match.one_of.string_match")
	case v.GetPresentMatch():
		out.present = true
	default:
		return nil, fmt.Errorf("%s.value: only string_match, list_match (one_of string_match) and present_match are supported by trellis-proxy", path)
	}
	return out, err
}

// match evaluates the matcher against the request's authn metadata.
func (m *metaMatch) match(a *Authn) bool {
	return m.matchValue(a) != m.invert
}

func (m *metaMatch) matchValue(a *Authn) bool {
	if a == nil || a.Claims == nil {
		return false
	}
	c := a.Claims
	var v any
	switch m.source {
	case mdPrincipal:
		v = c.Principal()
	case mdPresenter:
		if c.Presenter == "" {
			return false
		}
		v = c.Presenter
	case mdAudiences:
		if len(c.Audiences) == 0 {
			return false
		}
		if m.present {
			return true
		}
		for _, s := range c.Audiences {
			if m.str.MatchString(s) {
				return true
			}
		}
		return false
	case mdClaims:
		if m.key != "" && m.key != a.MetadataKey {
			return false
		}
		var cur any = c.All
		for _, k := range m.claims {
			obj, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			if cur, ok = obj[k]; !ok {
				return false
			}
		}
		v = cur
	}
	if m.present {
		return v != nil
	}
	switch v := v.(type) {
	case string:
		return m.str.MatchString(v)
	case []any:
		if !m.list {
			return false
		}
		for _, e := range v {
			if s, ok := e.(string); ok && m.str.MatchString(s) {
				return true
			}
		}
	}
	return false
}
