package trellisd

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trellis-mesh/trellis/internal/config/validate"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
)

// debugHandler serves the debug endpoints:
//
//	/debug/syncz        each connected proxy: id, per type sent/acked version, last NACK
//	/debug/configz      the config being served and the files rejected
//	/debug/registryz    services and endpoints
//	/debug/config_dump  ?proxyID=ID: the xDS a connected proxy is given
func (s *Server) debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/syncz", s.syncz)
	mux.HandleFunc("/debug/configz", s.configz)
	mux.HandleFunc("/debug/registryz", s.registryz)
	mux.HandleFunc("/debug/config_dump", s.configDump)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("/debug/syncz\n/debug/configz\n/debug/registryz\n/debug/config_dump?proxyID=ID\n/debug/pprof/\n"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// SynczResponse is the body of /debug/syncz.
type SynczResponse struct {
	// Version is the state version trellisd last pushed.
	Version string               `json:"version"`
	Proxies []server.ProxyStatus `json:"proxies"`
}

func (s *Server) syncz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, SynczResponse{Version: versionString(s.Version()), Proxies: s.ads.Status()})
}

// ConfigzResource is one served resource in /debug/configz.
type ConfigzResource struct {
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Source    string            `json:"source,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Spec      json.RawMessage   `json:"spec,omitempty"`
}

// ConfigzResponse is the body of /debug/configz.
type ConfigzResponse struct {
	Version   uint64              `json:"version"`
	Resources []ConfigzResource   `json:"resources"`
	Errors    map[string][]string `json:"errors,omitempty"`   // file -> problems keeping it out
	Warnings  map[string][]string `json:"warnings,omitempty"` // file -> warnings about served content
	// NotEnforced lists, as error-level findings, the served resources
	// whose kind Trellis does not enforce yet (from files and Kubernetes
	// alike).
	NotEnforced []ConfigzFinding `json:"notEnforced,omitempty"`
	// JWKSFailures lists the RequestAuthentication jwksUris whose last
	// fetch failed; until one is fetched its tokens are refused (401).
	JWKSFailures []ConfigzJWKSFailure `json:"jwksFailures,omitempty"`
}

// ConfigzJWKSFailure is a jwksUri trellisd could not fetch.
type ConfigzJWKSFailure struct {
	URI       string   `json:"uri"`
	Resources []string `json:"resources"` // RequestAuthentication namespace/name
	Error     string   `json:"error"`
	// Stale reports that an earlier fetched document is still served.
	Stale bool `json:"stale,omitempty"`
}

// ConfigzFinding is one finding about a served resource.
type ConfigzFinding struct {
	Level    string `json:"level"` // "Error"
	Resource string `json:"resource"`
	Source   string `json:"source,omitempty"`
	Message  string `json:"message"`
}

func (s *Server) configz(w http.ResponseWriter, r *http.Request) {
	snap := s.store.Snapshot()
	resp := ConfigzResponse{Version: snap.Version(), Resources: []ConfigzResource{}}
	for _, res := range snap.All() {
		cr := ConfigzResource{Kind: res.Kind, Namespace: res.Namespace, Name: res.Name, Source: res.Source, Labels: res.Labels}
		if res.Spec != nil {
			if b, err := protojson.Marshal(res.Spec); err == nil {
				cr.Spec = b
			}
		}
		resp.Resources = append(resp.Resources, cr)
		if is, ok := validate.NotEnforced(res); ok {
			resp.NotEnforced = append(resp.NotEnforced, ConfigzFinding{Level: "Error", Resource: is.Resource, Source: is.Source, Message: is.Message})
		}
	}
	if s.jwks != nil {
		for _, f := range s.jwks.Failures() {
			resp.JWKSFailures = append(resp.JWKSFailures, ConfigzJWKSFailure{URI: f.URI, Resources: f.Resources, Error: f.Err.Error(), Stale: f.Stale})
		}
	}
	if s.watcher != nil {
		resp.Errors = issueStrings(s.watcher.Errors())
		resp.Warnings = issueStrings(s.watcher.Warnings())
	}
	writeJSON(w, resp)
}

func issueStrings[I interface{ String() string }](m map[string][]I) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string][]string, len(m))
	for f, is := range m {
		for _, i := range is {
			out[f] = append(out[f], i.String())
		}
	}
	return out
}

// RegistryzResponse is the body of /debug/registryz.
type RegistryzResponse struct {
	Services  []*registry.Service             `json:"services"`
	Endpoints map[string][]*registry.Endpoint `json:"endpoints"`
}

func (s *Server) registryz(w http.ResponseWriter, r *http.Request) {
	st := s.gen.state.Load()
	resp := RegistryzResponse{Services: []*registry.Service{}, Endpoints: map[string][]*registry.Endpoint{}}
	if st != nil && st.reg != nil {
		resp.Services = append(resp.Services, st.reg.Services...)
		for h, eps := range st.reg.Endpoints {
			resp.Endpoints[h] = eps
		}
	}
	writeJSON(w, resp)
}

// ConfigDumpResponse is the body of /debug/config_dump: the resources a
// proxy is given, by type abbreviation (CDS, EDS, LDS, RDS, SDS), each as
// the resource's protojson with its @type.
type ConfigDumpResponse struct {
	ProxyID   string                       `json:"proxyId"`
	Version   string                       `json:"version"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	if id == "" {
		http.Error(w, "proxyID query parameter is required, e.g. /debug/config_dump?proxyID=sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local (see /debug/syncz for connected ids)", http.StatusBadRequest)
		return
	}
	node := s.ads.Node(id)
	if node == nil {
		http.Error(w, "proxy "+id+" is not connected (see /debug/syncz)", http.StatusNotFound)
		return
	}
	snap, err := s.gen.Generate(node)
	if err != nil {
		http.Error(w, "generate: "+err.Error(), http.StatusInternalServerError)
		return
	}
	resp := ConfigDumpResponse{ProxyID: id, Version: snap.Version, Resources: map[string][]json.RawMessage{}}
	types := make([]string, 0, len(snap.Resources))
	for t := range snap.Resources {
		if t == server.VHDSRoutes || t == resourcev3.VirtualHostType {
			continue // the full route configurations hold the same virtual hosts
		}
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		for _, res := range snap.Resources[t] {
			b, err := protojson.Marshal(res.Any)
			if err != nil {
				http.Error(w, "render "+res.Name+": "+err.Error(), http.StatusInternalServerError)
				return
			}
			resp.Resources[server.ShortType(t)] = append(resp.Resources[server.ShortType(t)], b)
		}
	}
	writeJSON(w, resp)
}
