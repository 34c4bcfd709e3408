package trellisd

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// state is one immutable view of everything translation reads.
type state struct {
	version uint64
	cfg     *config.Snapshot
	reg     *registry.Snapshot
	mesh    translate.MeshOptions
	creds   map[string]*translate.Credential
	jwks    map[string]string

	addrOnce sync.Once
	byAddr   map[string][]*registry.Service // endpoint address -> services with an endpoint there
}

// inboundRegistry is the part of the registry a proxy's inbound half reads:
// the services with an endpoint on one of the proxy's IPs (translate's
// Inbound finds the local ports by scanning for exactly those). Handing it
// the whole registry would make every push O(proxies x endpoints).
func (s *state) inboundRegistry(ips []string) *registry.Snapshot {
	s.addrOnce.Do(func() {
		s.byAddr = map[string][]*registry.Service{}
		if s.reg == nil {
			return
		}
		for _, svc := range s.reg.Services {
			seen := map[string]bool{}
			for _, ep := range s.reg.Endpoints[svc.Hostname] {
				if !seen[ep.Address] {
					seen[ep.Address] = true
					s.byAddr[ep.Address] = append(s.byAddr[ep.Address], svc)
				}
			}
		}
	})
	out := &registry.Snapshot{Endpoints: map[string][]*registry.Endpoint{}}
	for _, ip := range ips {
		for _, svc := range s.byAddr[ip] {
			if _, dup := out.Endpoints[svc.Hostname]; dup {
				continue
			}
			out.Services = append(out.Services, svc)
			out.Endpoints[svc.Hostname] = s.reg.Endpoints[svc.Hostname]
		}
	}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Hostname < out.Services[j].Hostname })
	return out
}

// translator is the part of internal/xds/translate the generator uses. The
// outbound half (with its endpoints) reads only the proxy's
// translate.OutboundProxy and the state, so proxies whose OutboundProxy
// has the same Key share one translation and one set of marshalled
// resources per state version.
type translator interface {
	ProxyFromNode(node *corev3.Node) (*translate.Proxy, error)
	Outbound(in translate.Input) *translate.Output
	Inbound(in translate.Input) *translate.Output
}

// translateFuncs is the real translator.
type translateFuncs struct{}

func (translateFuncs) ProxyFromNode(n *corev3.Node) (*translate.Proxy, error) {
	return translate.ProxyFromNode(n)
}

// Outbound is translate.Outbound plus the endpoints of its EDS clusters.
func (translateFuncs) Outbound(in translate.Input) *translate.Output {
	out := translate.Outbound(in)
	out.Endpoints = translate.Endpoints(in, out.EDSClusterNames())
	return out
}

func (translateFuncs) Inbound(in translate.Input) *translate.Output { return translate.Inbound(in) }

// generator implements server.Generator over the current state, caching the
// marshalled outbound resources per (state version, OutboundProxy key).
type generator struct {
	tr    translator
	state atomic.Pointer[state]

	mu       sync.Mutex
	cacheVer uint64
	cache    map[string]*outEntry // for cacheVer, by translate.OutboundProxy.Key
	prev     map[string]*outEntry // for the version before, to reuse lists
}

type outEntry struct {
	once sync.Once
	res  map[string][]*server.Resource
	err  error
	prev *outEntry // the same key's entry in the state before, or nil

	// merged caches outbound+inbound lists by type and inbound content, so
	// proxies whose inbound parts are equal share the merged list too.
	mu     sync.Mutex
	merged map[string][]*server.Resource
}

func newGenerator(tr translator) *generator {
	return &generator{tr: tr, cache: map[string]*outEntry{}}
}

func (g *generator) setState(s *state) { g.state.Store(s) }

// Generate builds the resources for one node: the shared outbound part plus
// the proxy's own inbound part.
func (g *generator) Generate(node *corev3.Node) (*server.Snapshot, error) {
	st := g.state.Load()
	if st == nil {
		return nil, fmt.Errorf("no config loaded yet")
	}
	p, err := g.tr.ProxyFromNode(node)
	if err != nil {
		return nil, err
	}
	in := translate.Input{Proxy: p, Config: st.cfg, Registry: st.reg, Mesh: st.mesh, Credentials: st.creds, JWKS: st.jwks}
	e, err := g.outbound(st, in)
	if err != nil {
		return nil, err
	}
	inIn := in
	inIn.Registry = st.inboundRegistry(p.IPs)
	own, err := marshal(g.tr.Inbound(inIn))
	if err != nil {
		return nil, err
	}
	snap := &server.Snapshot{Version: strconv.FormatUint(st.version, 10), Resources: make(map[string][]*server.Resource, len(e.res))}
	for t, l := range e.res {
		snap.Resources[t] = l
	}
	for t, l := range own {
		snap.Resources[t] = e.merge(t, l)
	}
	return snap, nil
}

// merge returns the entry's list of type t merged with a proxy's own
// resources, shared between proxies whose own resources are equal (and
// with the state before when nothing changed).
func (e *outEntry) merge(t string, own []*server.Resource) []*server.Resource {
	var b strings.Builder
	b.WriteString(t)
	for _, r := range own {
		b.WriteByte('|')
		b.WriteString(r.Name)
		b.WriteByte('=')
		b.WriteString(r.Version)
	}
	key := b.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	if l, ok := e.merged[key]; ok {
		return l
	}
	l := mergeLists(e.res[t], own)
	if prev := e.prev; prev != nil {
		prev.mu.Lock()
		if p, ok := prev.merged[key]; ok && equalLists(p, l) {
			l = p
		}
		prev.mu.Unlock()
	}
	if e.merged == nil {
		e.merged = map[string][]*server.Resource{}
	}
	if len(e.merged) < 64 { // bounded: proxy-specific inbound parts are not worth keeping
		e.merged[key] = l
	}
	return l
}

func equalLists(a, b []*server.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Version != b[i].Version {
			return false
		}
	}
	return true
}

// outbound returns the marshalled outbound resources for in, translating
// once per OutboundProxy key and state version. The translation is handed
// only the OutboundProxy, the same for every proxy with that key.
func (g *generator) outbound(st *state, in translate.Input) (*outEntry, error) {
	op := translate.NewOutboundProxy(in)
	key := op.Key()
	in.Proxy = op.Proxy()
	g.mu.Lock()
	if st.version != g.cacheVer {
		if st.version < g.cacheVer {
			// A connection still generating from an older state: don't
			// disturb the cache, translate without it.
			g.mu.Unlock()
			res, err := marshal(g.tr.Outbound(in))
			return &outEntry{res: res}, err
		}
		g.prev, g.cache, g.cacheVer = g.cache, map[string]*outEntry{}, st.version
		// Only one state back is kept: cut the older links.
		for _, e := range g.prev {
			e.mu.Lock()
			e.prev = nil
			e.mu.Unlock()
		}
	}
	e := g.cache[key]
	if e == nil {
		e = &outEntry{prev: g.prev[key]}
		g.cache[key] = e
	}
	g.mu.Unlock()
	e.mu.Lock()
	old := e.prev
	e.mu.Unlock()
	e.once.Do(func() {
		e.res, e.err = marshal(g.tr.Outbound(in))
		if e.err == nil && old != nil && old.err == nil {
			reuse(e.res, old.res)
		}
	})
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// reuse replaces each list of next that equals the one in prev with prev's
// slice, so streams see "same list" and skip diffing it, and the new copies
// can be freed.
func reuse(next, prev map[string][]*server.Resource) {
	for t, l := range next {
		p, ok := prev[t]
		if !ok || len(p) != len(l) {
			continue
		}
		if equalLists(l, p) {
			next[t] = p
		}
	}
}

// marshal turns translation output into server resources by type.
func marshal(o *translate.Output) (map[string][]*server.Resource, error) {
	out := map[string][]*server.Resource{}
	if o == nil {
		return out, nil
	}
	add := func(typeURL, name string, m proto.Message) error {
		r, err := server.NewResource(name, m)
		if err != nil {
			return err
		}
		out[typeURL] = append(out[typeURL], r)
		return nil
	}
	for _, c := range o.Clusters {
		if err := add(resourcev3.ClusterType, c.GetName(), c); err != nil {
			return nil, err
		}
	}
	for _, e := range o.Endpoints {
		if err := add(resourcev3.EndpointType, e.GetClusterName(), e); err != nil {
			return nil, err
		}
	}
	for _, l := range o.Listeners {
		if err := add(resourcev3.ListenerType, l.GetName(), l); err != nil {
			return nil, err
		}
	}
	for _, r := range o.Routes {
		if err := add(resourcev3.RouteType, r.GetName(), r); err != nil {
			return nil, err
		}
		// The VHDS form and virtual hosts, for Delta proxies that ask
		// (server.WantsVHDS).
		slim, vhosts, err := server.VHDSResources(r)
		if err != nil {
			return nil, err
		}
		out[server.VHDSRoutes] = append(out[server.VHDSRoutes], slim)
		out[resourcev3.VirtualHostType] = append(out[resourcev3.VirtualHostType], vhosts...)
	}
	for _, s := range o.Secrets {
		if err := add(resourcev3.SecretType, s.GetName(), s); err != nil {
			return nil, err
		}
	}
	for _, l := range out {
		server.SortResources(l)
	}
	return out, nil
}

// mergeLists merges two sorted lists into a new one; on equal names the
// second (proxy-specific) wins.
func mergeLists(a, b []*server.Resource) []*server.Resource {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]*server.Resource, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].Name < b[j].Name:
			out = append(out, a[i])
			i++
		case b[j].Name < a[i].Name:
			out = append(out, b[j])
			j++
		default:
			out = append(out, b[j])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
