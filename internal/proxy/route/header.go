package route

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

// headerMatcher matches one request header, pseudo-headers included.
type headerMatcher struct{ filter.HeaderMatcher }

func compileHeaderMatcher(h *routev3.HeaderMatcher, path string) (headerMatcher, error) {
	hm, err := filter.CompileHeaderMatcher(h, path)
	return headerMatcher{hm}, err
}

func (h *headerMatcher) match(q *Request) bool {
	v, ok := q.header(h.Name)
	return h.Match(v, ok)
}

type queryMatcher struct {
	name    string
	present bool
	sm      *filter.StringMatcher
}

func compileQueryMatcher(q *routev3.QueryParameterMatcher, path string) (queryMatcher, error) {
	qm := queryMatcher{name: q.GetName()}
	switch m := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, err := filter.CompileStringMatcher(m.StringMatch, path+".string_match")
		if err != nil {
			return qm, err
		}
		qm.sm = &sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		qm.present = m.PresentMatch
	default:
		qm.present = true
	}
	return qm, nil
}

// QueryValue returns the value of the first query parameter named name.
func QueryValue(query []byte, name string) ([]byte, bool) {
	for len(query) > 0 {
		var kv []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			kv, query = query[:i], query[i+1:]
		} else {
			kv, query = query, nil
		}
		k, v := kv, []byte(nil)
		if i := bytes.IndexByte(kv, '='); i >= 0 {
			k, v = kv[:i], kv[i+1:]
		}
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

func (q *queryMatcher) match(query []byte) bool {
	v, ok := QueryValue(query, q.name)
	if q.sm != nil {
		return ok && q.sm.Match(v)
	}
	return ok == q.present
}

// HeaderOps is a compiled set of request/response header manipulations.
type HeaderOps struct {
	ReqAdd     []HeaderAdd
	ReqRemove  []string
	RespAdd    []HeaderAdd
	RespRemove []string
}

// Empty reports whether there is nothing to do.
func (o *HeaderOps) Empty() bool {
	return len(o.ReqAdd)+len(o.ReqRemove)+len(o.RespAdd)+len(o.RespRemove) == 0
}

// Append actions.
const (
	AppendIfExistsOrAdd = iota
	AddIfAbsent
	OverwriteIfExistsOrAdd
	OverwriteIfExists
)

// HeaderAdd is one header to add with its append action.
type HeaderAdd struct {
	Name   string
	Value  []byte
	Action int
}

func compileHeaderOps(reqAdd []*corev3.HeaderValueOption, reqRemove []string, respAdd []*corev3.HeaderValueOption, respRemove []string, path string) (HeaderOps, error) {
	var o HeaderOps
	var err error
	if o.ReqAdd, err = compileAdds(reqAdd, path+".request_headers_to_add"); err != nil {
		return o, err
	}
	if o.RespAdd, err = compileAdds(respAdd, path+".response_headers_to_add"); err != nil {
		return o, err
	}
	for _, n := range reqRemove {
		o.ReqRemove = append(o.ReqRemove, strings.ToLower(n))
	}
	for _, n := range respRemove {
		o.RespRemove = append(o.RespRemove, strings.ToLower(n))
	}
	return o, nil
}

func compileAdds(in []*corev3.HeaderValueOption, path string) ([]HeaderAdd, error) {
	var out []HeaderAdd
	for i, h := range in {
		name := strings.ToLower(h.GetHeader().GetKey())
		if name == "" {
			return nil, fmt.Errorf("%s[%d].header.key: must not be empty", path, i)
		}
		if strings.HasPrefix(name, ":") && name != ":authority" {
			return nil, fmt.Errorf("%s[%d].header.key: %q: only :authority may be set among pseudo-headers", path, i, name)
		}
		val := h.GetHeader().GetValue()
		if val == "" && len(h.GetHeader().GetRawValue()) > 0 {
			val = string(h.GetHeader().GetRawValue())
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			return nil, fmt.Errorf("%s[%d].header.value: must not contain CR, LF or NUL", path, i)
		}
		val = strings.ReplaceAll(val, "%%", "%")
		action := int(h.GetAppendAction())
		if ap := h.GetAppend(); ap != nil && !ap.GetValue() {
			action = OverwriteIfExistsOrAdd
		}
		out = append(out, HeaderAdd{Name: name, Value: []byte(val), Action: action})
	}
	return out, nil
}

// ApplyAdds applies the adds to h.
func ApplyAdds(h *http1.Headers, adds []HeaderAdd) {
	for i := range adds {
		a := &adds[i]
		switch a.Action {
		case AppendIfExistsOrAdd:
			h.Add([]byte(a.Name), a.Value)
		case AddIfAbsent:
			if !h.Has(a.Name) {
				h.Add([]byte(a.Name), a.Value)
			}
		case OverwriteIfExistsOrAdd:
			h.Set(a.Name, a.Value)
		case OverwriteIfExists:
			if h.Has(a.Name) {
				h.Set(a.Name, a.Value)
			}
		}
	}
}

// ApplyRemoves removes the named headers from h.
func ApplyRemoves(h *http1.Headers, names []string) {
	for _, n := range names {
		h.Del(n)
	}
}

// HashKey computes the request hash for consistent-hash load balancing,
// or 0 when no policy yields a value.
func (r *Route) HashKey(q *Request, sourceIP []byte) uint64 {
	if len(r.Hash) == 0 {
		return 0
	}
	var sum uint64
	found := false
	for _, hp := range r.Hash {
		var v []byte
		ok := false
		switch {
		case hp.Header != "":
			v, ok = q.header(hp.Header)
		case hp.Cookie != "":
			v, ok = cookieValue(q.Headers, hp.Cookie)
		case hp.Query != "":
			p := q.Path
			if i := bytes.IndexByte(p, '?'); i >= 0 {
				v, ok = QueryValue(p[i+1:], hp.Query)
			}
		case hp.SourceIP:
			v, ok = sourceIP, len(sourceIP) > 0
		}
		if !ok {
			continue
		}
		h := fnv.New64a()
		h.Write(v)
		sum = sum<<1 | sum>>63
		sum ^= h.Sum64()
		found = true
		if hp.Terminal {
			break
		}
	}
	if !found {
		return 0
	}
	if sum == 0 {
		sum = 1
	}
	return sum
}

func cookieValue(h http1.Headers, name string) ([]byte, bool) {
	for _, f := range h {
		if !http1.EqualFold(f.Name, "cookie") {
			continue
		}
		for _, part := range bytes.Split(f.Value, []byte(";")) {
			part = bytes.TrimSpace(part)
			if i := bytes.IndexByte(part, '='); i >= 0 && string(part[:i]) == name {
				return part[i+1:], true
			}
		}
	}
	return nil, false
}
