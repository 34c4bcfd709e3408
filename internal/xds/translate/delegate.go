package translate

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
)

// expandDelegates replaces each http route of a root VirtualService that
// names a delegate with the delegate's routes, the way Istio merges them:
// every delegate match is combined with every root match (the root's
// conditions hold too; on a field both set, the delegate's must fit inside
// the root's, else that combination is dropped). A delegate is looked up by
// name in its namespace (the root's when empty) and must have no hosts.
// Delegates do not chain.
func (s *scope) expandDelegates(vs *virtualService) []*networking.HTTPRoute {
	var out []*networking.HTTPRoute
	for _, hr := range vs.spec.GetHttp() {
		d := hr.GetDelegate()
		if d == nil {
			out = append(out, hr)
			continue
		}
		ns := d.GetNamespace()
		if ns == "" {
			ns = nsOf(vs.res)
		}
		del := s.delegate(ns, d.GetName())
		if del == nil {
			continue
		}
		for _, dr := range del.GetHttp() {
			if dr.GetDelegate() != nil {
				continue
			}
			merged := proto.Clone(dr).(*networking.HTTPRoute)
			merged.Match = mergeMatches(hr.GetMatch(), dr.GetMatch())
			if merged.Match == nil && (len(hr.GetMatch()) > 0 || len(dr.GetMatch()) > 0) {
				continue // no combination fits
			}
			out = append(out, merged)
		}
	}
	return out
}

func (s *scope) delegate(ns, name string) *networking.VirtualService {
	for _, r := range s.in.Config.List(config.KindVirtualService) {
		if nsOf(r) == ns && r.Name == name {
			if vs, ok := r.Spec.(*networking.VirtualService); ok && len(vs.GetHosts()) == 0 {
				return vs
			}
		}
	}
	return nil
}

func mergeMatches(root, del []*networking.HTTPMatchRequest) []*networking.HTTPMatchRequest {
	if len(root) == 0 {
		return del
	}
	if len(del) == 0 {
		return root
	}
	var out []*networking.HTTPMatchRequest
	for _, r := range root {
		for _, d := range del {
			if m := mergeMatch(r, d); m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// mergeMatch combines one root and one delegate match, or returns nil when
// they conflict.
func mergeMatch(r, d *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	m := proto.Clone(r).(*networking.HTTPMatchRequest)
	if d.GetName() != "" {
		m.Name = d.GetName()
	}
	if d.GetUri() != nil {
		if r.GetUri() != nil && !uriWithin(d.GetUri(), r.GetUri()) {
			return nil
		}
		m.Uri = d.GetUri()
	}
	for _, f := range []struct {
		dst **networking.StringMatch
		src *networking.StringMatch
	}{{&m.Scheme, d.GetScheme()}, {&m.Method, d.GetMethod()}, {&m.Authority, d.GetAuthority()}} {
		if f.src == nil {
			continue
		}
		if *f.dst != nil && !proto.Equal(*f.dst, f.src) {
			return nil
		}
		*f.dst = f.src
	}
	merge := func(dst *map[string]*networking.StringMatch, src map[string]*networking.StringMatch) bool {
		for k, v := range src {
			if *dst == nil {
				*dst = map[string]*networking.StringMatch{}
			}
			if have, ok := (*dst)[k]; ok && !proto.Equal(have, v) {
				return false
			}
			(*dst)[k] = v
		}
		return true
	}
	if !merge(&m.Headers, d.GetHeaders()) || !merge(&m.QueryParams, d.GetQueryParams()) || !merge(&m.WithoutHeaders, d.GetWithoutHeaders()) {
		return nil
	}
	if d.GetPort() != 0 {
		if r.GetPort() != 0 && r.GetPort() != d.GetPort() {
			return nil
		}
		m.Port = d.GetPort()
	}
	for k, v := range d.GetSourceLabels() {
		if m.SourceLabels == nil {
			m.SourceLabels = map[string]string{}
		}
		if have, ok := m.SourceLabels[k]; ok && have != v {
			return nil
		}
		m.SourceLabels[k] = v
	}
	if d.GetIgnoreUriCase() {
		m.IgnoreUriCase = true
	}
	return m
}

// uriWithin reports whether every path the delegate's uri match admits is
// also admitted by the root's (only prefix and exact are compared; a regex
// on either side is accepted as is).
func uriWithin(d, r *networking.StringMatch) bool {
	dv, dPrefix := matchValue(d)
	rv, rPrefix := matchValue(r)
	if dv == "" || rv == "" {
		return true
	}
	if rPrefix {
		return strings.HasPrefix(dv, rv)
	}
	return !dPrefix && dv == rv
}

func matchValue(m *networking.StringMatch) (string, bool) {
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		return v.Prefix, true
	case *networking.StringMatch_Exact:
		return v.Exact, false
	}
	return "", false
}
