package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/trellis-mesh/trellis/internal/proxy/authz"
)

// authzParams are the query parameters /debug/authz/check takes.
var authzParams = map[string]bool{"listener": true, "method": true, "path": true, "host": true, "header": true,
	"principal": true, "namespace": true, "source_ip": true, "destination_ip": true, "port": true, "sni": true}

// ParseAuthzQuery reads /debug/authz/check's query parameters.
func ParseAuthzQuery(v url.Values) (authz.Query, error) {
	var q authz.Query
	for k := range v {
		if !authzParams[k] {
			return q, fmt.Errorf("unknown parameter %q; use listener, method, path, host, header, principal, namespace, source_ip, destination_ip, port or sni", k)
		}
	}
	q.Listener, q.Method, q.Path, q.Host = v.Get("listener"), v.Get("method"), v.Get("path"), v.Get("host")
	q.Principal, q.Namespace, q.SourceIP, q.DestinationIP, q.SNI = v.Get("principal"), v.Get("namespace"), v.Get("source_ip"), v.Get("destination_ip"), v.Get("sni")
	if p := v.Get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return q, fmt.Errorf("port: %q is not a port", p)
		}
		q.Port = uint32(n)
	}
	for i, h := range v["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return q, fmt.Errorf("header[%d]: %q is not NAME:VALUE", i, h)
		}
		q.Headers = append(q.Headers, authz.Header{Name: name, Value: value})
	}
	return q, nil
}

// AuthzQueryValues encodes q as /debug/authz/check's parameters.
func AuthzQueryValues(q authz.Query) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"listener": q.Listener, "method": q.Method, "path": q.Path, "host": q.Host, "principal": q.Principal,
		"namespace": q.Namespace, "source_ip": q.SourceIP, "destination_ip": q.DestinationIP, "sni": q.SNI} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Port != 0 {
		v.Set("port", strconv.Itoa(int(q.Port)))
	}
	for _, h := range q.Headers {
		v.Add("header", h.Name+":"+h.Value)
	}
	return v
}

func (s *Server) handleAuthzPolicies(w http.ResponseWriter, r *http.Request) {
	if s.opts.Listeners == nil {
		http.Error(w, "no listeners are served by this admin", http.StatusServiceUnavailable)
		return
	}
	for k := range r.URL.Query() {
		if k != "listener" {
			http.Error(w, fmt.Sprintf("unknown parameter %q; use listener", k), http.StatusBadRequest)
			return
		}
	}
	l, err := authz.Policies(s.opts.Listeners(), r.URL.Query().Get("listener"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, l)
}

func (s *Server) handleAuthzCheck(w http.ResponseWriter, r *http.Request) {
	if s.opts.Listeners == nil {
		http.Error(w, "no listeners are served by this admin", http.StatusServiceUnavailable)
		return
	}
	q, err := ParseAuthzQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ls := s.opts.Listeners()
	if _, err := authz.Find(ls, q.Listener); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	a, err := authz.Check(ls, q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, a)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
