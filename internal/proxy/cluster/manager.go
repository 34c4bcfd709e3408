package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/healthcheck"
	"github.com/trellis-mesh/trellis/internal/proxy/outlier"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// Resolver looks up a host name's addresses (for STRICT_DNS clusters).
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Options are a Manager's collaborators. Zero values use real
// implementations: a fresh stats store, a fresh interner, the system
// resolver, the wall clock and math/rand/v2.
type Options struct {
	Stats    *stats.Store
	Interner *telemetry.Interner
	Resolver Resolver
	Now      func() time.Time
	Rand     func() uint64
	// Logf receives background errors (DNS failures); nil discards them.
	Logf func(format string, args ...any)
	// Secrets answers the SDS secrets upstream TLS contexts name (the
	// workload certificate `default` and `ROOTCA` for mesh mTLS); nil
	// means the proxy holds none.
	Secrets SecretSource
}

// Manager owns every cluster of the proxy. Reads (Get, Names) are
// lock-free; updates are serialized.
type Manager struct {
	opts Options
	ctx  context.Context
	stop context.CancelFunc

	mu       sync.Mutex // serializes updates
	static   map[string]*Cluster
	dynamic  map[string]*Cluster
	clas     map[string]*endpointv3.ClusterLoadAssignment // last EDS assignment by service name
	stats    map[string]*Stats
	clusters atomic.Pointer[map[string]*Cluster]
}

// NewManager returns an empty manager; Close stops its background work.
func NewManager(opts Options) *Manager {
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.Interner == nil {
		opts.Interner = &telemetry.Interner{}
	}
	if opts.Resolver == nil {
		opts.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Secrets == nil {
		opts.Secrets = noSecrets{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{opts: opts, ctx: ctx, stop: cancel,
		static: map[string]*Cluster{}, dynamic: map[string]*Cluster{},
		clas: map[string]*endpointv3.ClusterLoadAssignment{}, stats: map[string]*Stats{}}
	empty := map[string]*Cluster{}
	m.clusters.Store(&empty)
	return m
}

// Close stops health checkers, outlier sweeps and DNS refreshes.
func (m *Manager) Close() {
	m.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.static {
		c.stopBackground()
	}
	for _, c := range m.dynamic {
		c.stopBackground()
	}
}

// Get returns the named cluster or nil. It does not lock or allocate.
func (m *Manager) Get(name string) *Cluster { return (*m.clusters.Load())[name] }

// Names returns every cluster name, sorted.
func (m *Manager) Names() []string {
	all := *m.clusters.Load()
	out := make([]string, 0, len(all))
	for n := range all {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// All returns every cluster sorted by name.
func (m *Manager) All() []*Cluster {
	all := *m.clusters.Load()
	out := make([]*Cluster, 0, len(all))
	for _, c := range all {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// IsStatic reports whether the named cluster came from the bootstrap.
func (m *Manager) IsStatic(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.static[name]
	return ok
}

// EDSServiceNames returns the service names the EDS clusters wait for,
// sorted (what the xDS client subscribes to).
func (m *Manager) EDSServiceNames() []string {
	var out []string
	for _, c := range *m.clusters.Load() {
		if c.Type == TypeEDS {
			out = append(out, c.EDSServiceName)
		}
	}
	sort.Strings(out)
	return out
}

// Warm reports whether every EDS cluster has received its endpoints.
func (m *Manager) Warm() bool {
	for _, c := range *m.clusters.Load() {
		if !c.Warm() {
			return false
		}
	}
	return true
}

// AddStatic adds bootstrap static_resources clusters. They are never
// removed by CDS; a CDS cluster of the same name is rejected.
func (m *Manager) AddStatic(list []*clusterv3.Cluster) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := m.compileSet(list, m.static, "static_resources.clusters")
	if err != nil {
		return err
	}
	for name, c := range next {
		if _, dup := m.dynamic[name]; dup {
			return fmt.Errorf("static_resources.clusters: %q is also a dynamic cluster", name)
		}
		m.static[name] = c
	}
	m.publish()
	return nil
}

// UpdateClusters replaces the dynamic (CDS) clusters with list: all are
// validated first and any error rejects the whole update, keeping the
// previous clusters. Unchanged clusters keep their runtime state; new EDS
// clusters are cold until their endpoints arrive (but get the last known
// assignment for their service name at once).
func (m *Manager) UpdateClusters(list []*clusterv3.Cluster) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, pc := range list {
		if _, ok := m.static[pc.GetName()]; ok {
			return fmt.Errorf("clusters[%d] (%q): name is taken by a bootstrap static cluster", i, pc.GetName())
		}
	}
	next, err := m.compileSet(list, m.dynamic, "clusters")
	if err != nil {
		for _, pc := range list {
			if s := m.stats[pc.GetName()]; s != nil {
				s.UpdateRejected.Inc()
			}
		}
		return err
	}
	for name, old := range m.dynamic {
		if next[name] != old {
			old.stopBackground()
		}
		if _, ok := next[name]; !ok {
			delete(m.stats, name)
			m.opts.Stats.Remove("cluster", name)
		}
	}
	m.dynamic = next
	m.publish()
	return nil
}

// compileSet compiles list, reusing the clusters of prev whose protos are
// unchanged. Nothing in prev is modified.
func (m *Manager) compileSet(list []*clusterv3.Cluster, prev map[string]*Cluster, path string) (map[string]*Cluster, error) {
	next := make(map[string]*Cluster, len(list))
	var errs []error
	fresh := []*Cluster{}
	for i, pc := range list {
		prefix := fmt.Sprintf("%s[%d] (%q).", path, i, pc.GetName())
		if _, dup := next[pc.GetName()]; dup {
			errs = append(errs, fmt.Errorf("%sname: duplicate cluster name", prefix))
			continue
		}
		if old, ok := prev[pc.GetName()]; ok && proto.Equal(old.proto, pc) {
			next[pc.GetName()] = old
			continue
		}
		c, err := compile(pc, prefix, m.opts.Secrets)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[c.Name] = c
		fresh = append(fresh, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Validation passed: give the new clusters runtime state.
	now := m.opts.Now()
	for _, c := range fresh {
		m.activate(c, now)
	}
	return next, nil
}

// activate binds stats, starts background work and sets initial hosts.
func (m *Manager) activate(c *Cluster, now time.Time) {
	s := m.stats[c.Name]
	if s == nil {
		s = newStats(m.opts.Stats, c.Name)
		m.stats[c.Name] = s
	}
	c.Stats = s
	s.UpdateSuccess.Inc()
	c.interner = m.opts.Interner
	c.added = now
	c.now = m.opts.Now
	if c.Service != nil {
		c.Service = m.opts.Interner.Service(*c.Service)
	}
	c.LB.Rand = m.opts.Rand
	c.cx = newBreaker(c.Breakers.MaxConnections, s.UpstreamCxOverflow, s.cbCxOpen)
	c.releaseCx = func() {
		c.cx.release()
		c.waiting.wake()
	}
	c.pending = newBreaker(c.Breakers.MaxPendingRequests, s.UpstreamRqPendingOverflow, s.cbPendingOpen)
	c.rq = newBreaker(c.Breakers.MaxRequests, s.UpstreamRqPendingOverflow, s.cbRqOpen)
	c.retry = newBreaker(c.Breakers.MaxRetries, s.UpstreamRqRetryOverflow, s.cbRetryOpen)
	ctx, cancel := context.WithCancel(m.ctx)
	c.stop = cancel
	if c.outlierCfg != nil {
		c.outlier = outlier.New(*c.outlierCfg, outlier.Options{
			Now: m.opts.Now, Rand: m.opts.Rand, OnChange: c.refresh,
			Stats: outlier.NewStats(s.scope),
		})
		go c.outlier.Run(ctx)
	}
	if c.hcConfig != nil {
		cfg := *c.hcConfig
		cfg.Dial = c.dialer.DialContext // health checks use the transport socket too
		c.hc = healthcheck.New(c.Name, cfg, healthcheck.NewStats(s.scope), c.refresh)
	}
	switch c.Type {
	case TypeStatic:
		var hosts []*Host
		if c.static != nil {
			hosts, _ = compileEndpoints(c.static, c.Name, "load_assignment", false, m.opts.Interner)
		}
		c.setHosts(hosts, c.static, now)
	case TypeStrictDNS, TypeLogicalDNS:
		c.resolveOnce(ctx, m.opts.Resolver, m.opts.Logf)
		go c.runDNS(ctx, m.opts.Resolver, m.opts.Logf)
	case TypeEDS:
		if cla := m.clas[c.EDSServiceName]; cla != nil {
			hosts, err := compileEndpoints(cla, c.Name, "endpoints", false, m.opts.Interner)
			if err == nil {
				c.setHosts(hosts, cla, now)
			}
		}
	case TypeOriginalDst:
		c.warm.Store(true)
	}
	if c.hc != nil {
		go c.hc.Run(ctx)
	}
}

func (c *Cluster) stopBackground() {
	if c.stop != nil {
		c.stop()
	}
	c.closeConns()
}

// CloseIdle closes the idle upstream connections of every cluster.
func (m *Manager) CloseIdle() {
	for _, c := range *m.clusters.Load() {
		c.CloseIdle()
	}
}

func (m *Manager) publish() {
	all := make(map[string]*Cluster, len(m.static)+len(m.dynamic))
	for n, c := range m.static {
		all[n] = c
	}
	for n, c := range m.dynamic {
		all[n] = c
	}
	m.clusters.Store(&all)
}

// UpdateEndpoints applies EDS load assignments (the full current set, by
// cluster_name = the EDS service name). Every assignment is validated first;
// an error rejects the whole update and keeps the previous endpoints.
// Assignments for clusters not (yet) known are kept for when they arrive.
func (m *Manager) UpdateEndpoints(list []*endpointv3.ClusterLoadAssignment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	type update struct {
		c     *Cluster
		hosts []*Host
		cla   *endpointv3.ClusterLoadAssignment
	}
	var ups []update
	var errs []error
	next := make(map[string]*endpointv3.ClusterLoadAssignment, len(list))
	byService := map[string][]*Cluster{}
	for _, c := range m.dynamic {
		if c.Type == TypeEDS {
			byService[c.EDSServiceName] = append(byService[c.EDSServiceName], c)
		}
	}
	for i, cla := range list {
		name := cla.GetClusterName()
		path := fmt.Sprintf("endpoints[%d] (%q)", i, name)
		if name == "" {
			errs = append(errs, fmt.Errorf("%s.cluster_name: must not be empty", path))
			continue
		}
		next[name] = cla
		for _, c := range byService[name] {
			if old := c.cla.Load(); old != nil && proto.Equal(old, cla) {
				continue
			}
			hosts, err := compileEndpoints(cla, c.Name, path, false, m.opts.Interner)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ups = append(ups, update{c, reuseHosts(c.Hosts(), hosts), cla})
		}
		if len(byService[name]) == 0 {
			if _, err := compileEndpoints(cla, name, path, false, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	now := m.opts.Now()
	for _, u := range ups {
		u.c.setHosts(u.hosts, u.cla, now)
	}
	// Clusters whose assignment disappeared lose their endpoints.
	for svc, cs := range byService {
		if _, ok := next[svc]; ok {
			continue
		}
		if _, had := m.clas[svc]; !had {
			continue
		}
		for _, c := range cs {
			c.setHosts(nil, &endpointv3.ClusterLoadAssignment{ClusterName: svc}, now)
		}
	}
	m.clas = next
	return nil
}

// reuseHosts keeps the Host objects (and their outlier/health/load state)
// of endpoints that did not change.
func reuseHosts(old, fresh []*Host) []*Host {
	if len(old) == 0 {
		return fresh
	}
	byAddr := make(map[string]*Host, len(old))
	for _, h := range old {
		byAddr[h.Address] = h
	}
	for i, h := range fresh {
		if o := byAddr[h.Address]; o != nil && o.Weight == h.Weight && o.Priority == h.Priority &&
			o.Locality == h.Locality && o.LocalityWeight == h.LocalityWeight && o.EDSHealth == h.EDSHealth && o.Peer == h.Peer && o.ServiceAccount == h.ServiceAccount &&
			maps.Equal(o.TransportMatch, h.TransportMatch) {
			fresh[i] = o
		}
	}
	return fresh
}

// ApplyClusters decodes CDS resources (as the xDS client hands them over)
// and calls UpdateClusters.
func (m *Manager) ApplyClusters(resources map[string]*anypb.Any) error {
	list := make([]*clusterv3.Cluster, 0, len(resources))
	names := make([]string, 0, len(resources))
	for n := range resources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var c clusterv3.Cluster
		if err := resources[n].UnmarshalTo(&c); err != nil {
			return fmt.Errorf("cluster %q: decode: %w", n, err)
		}
		list = append(list, &c)
	}
	return m.UpdateClusters(list)
}

// ApplyEndpoints decodes EDS resources and calls UpdateEndpoints.
func (m *Manager) ApplyEndpoints(resources map[string]*anypb.Any) error {
	list := make([]*endpointv3.ClusterLoadAssignment, 0, len(resources))
	names := make([]string, 0, len(resources))
	for n := range resources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var c endpointv3.ClusterLoadAssignment
		if err := resources[n].UnmarshalTo(&c); err != nil {
			return fmt.Errorf("endpoints %q: decode: %w", n, err)
		}
		list = append(list, &c)
	}
	return m.UpdateEndpoints(list)
}
