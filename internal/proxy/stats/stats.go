package stats

import (
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Kind tells a counter from a gauge from a histogram.
type Kind int

// The kinds of stat.
const (
	KindCounter Kind = iota
	KindGauge
	KindHistogram
)

// Counter only goes up. The zero value is ready to use.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge goes up and down. The zero value is ready to use.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Add adds n (which may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set replaces the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Histogram counts observations into fixed buckets. Create it with
// NewHistogram; Observe is lock-free and allocation-free.
type Histogram struct {
	bounds []float64 // upper bounds, ascending
	counts []atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

// DefaultBuckets are Envoy's default histogram buckets (milliseconds).
var DefaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// NewHistogram returns a histogram with the given ascending upper bounds.
func NewHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds))}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	// Linear scan: bucket lists are short (< 20) and this beats a binary
	// search's branch mispredictions at that size.
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// HistogramSnapshot is a point-in-time copy of a histogram, with cumulative
// bucket counts as Prometheus wants them.
type HistogramSnapshot struct {
	Bounds     []float64
	Cumulative []uint64
	Count      uint64
	Sum        float64
}

// Snapshot copies the histogram.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds))}
	var c uint64
	for i := range h.counts {
		c += h.counts[i].Load()
		s.Cumulative[i] = c
	}
	s.Count = h.count.Load()
	s.Sum = math.Float64frombits(h.sum.Load())
	if s.Count < c { // racing observers: keep the snapshot self-consistent
		s.Count = c
	}
	return s
}

// Stat is one registered statistic as the store lists it.
type Stat struct {
	// Name is the Envoy name, e.g. "cluster.outbound|80||a.b.svc.cluster.local.upstream_rq_total".
	Name string
	// Scope is the scope kind ("cluster", "listener", "http", "server", ...).
	Scope string
	// TagName and TagValue are the label extracted from the scope, empty
	// for unscoped stats.
	TagName, TagValue string
	// Suffix is the name after the scope, e.g. "upstream_rq_total".
	Suffix string
	Kind   Kind

	Counter   *Counter
	Gauge     *Gauge
	Histogram *Histogram

	// Rendered once at registration for the Prometheus exposition.
	promName, promLabels string
}

// Store owns every stat of one proxy. It is safe for concurrent use;
// registering takes a lock, reading a registered stat does not.
type Store struct {
	mu    sync.Mutex
	stats map[string]*Stat
	// Prometheus names and label strings are shared between stats (every
	// cluster has an upstream_rq_total), like Envoy's symbol table.
	promNames  map[string]string
	promLabels map[string]string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{stats: map[string]*Stat{}, promNames: map[string]string{}, promLabels: map[string]string{}}
}

func intern(m map[string]string, s string) string {
	if v, ok := m[s]; ok {
		return v
	}
	m[s] = s
	return s
}

// tagNames maps a scope kind to the label Envoy's default tag extractors
// give it in Prometheus output.
var tagNames = map[string]string{
	"cluster":  "cluster_name",
	"listener": "listener_address",
	"http":     "http_conn_manager_prefix",
	"tcp":      "tcp_prefix",
}

// Scope names a group of stats: kind "cluster" and name "outbound|80||x"
// give stats named "cluster.outbound|80||x.SUFFIX". A zero Scope names
// unscoped stats ("server.live" uses Scope{Kind: "server"}).
type Scope struct {
	store *Store
	kind  string
	name  string
}

// Scope returns the scope for kind and name; name may be empty.
func (s *Store) Scope(kind, name string) Scope { return Scope{store: s, kind: kind, name: name} }

func (sc Scope) fullName(suffix string) string {
	var b strings.Builder
	if sc.kind != "" {
		b.WriteString(sc.kind)
		b.WriteByte('.')
	}
	if sc.name != "" {
		b.WriteString(sc.name)
		b.WriteByte('.')
	}
	b.WriteString(suffix)
	return b.String()
}

func (sc Scope) get(suffix string, kind Kind, bounds []float64) *Stat {
	name := sc.fullName(suffix)
	s := sc.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stats[name]; ok && st.Kind == kind {
		return st
	}
	st := &Stat{Name: name, Scope: sc.kind, Suffix: suffix, Kind: kind}
	if sc.name != "" {
		st.TagName, st.TagValue = tagNames[sc.kind], sc.name
		if st.TagName == "" {
			st.TagName = sc.kind + "_name"
		}
	}
	pname, extra := PromName(st), ""
	if base, tag, ok := responseCodeTag(pname); ok {
		pname, extra = base, tag
	}
	st.promName = intern(s.promNames, pname)
	labels := extra
	if st.TagName != "" {
		labels = st.TagName + `="` + EscapeLabel(st.TagValue) + `"`
		if extra != "" {
			labels += "," + extra
		}
		if sc.kind != "" {
			st.TagValue = st.Name[len(sc.kind)+1 : len(sc.kind)+1+len(sc.name)] // shares Name's bytes
		}
	}
	st.promLabels = intern(s.promLabels, labels)
	switch kind {
	case KindCounter:
		st.Counter = &Counter{}
	case KindGauge:
		st.Gauge = &Gauge{}
	case KindHistogram:
		st.Histogram = NewHistogram(bounds)
	}
	s.stats[name] = st
	return st
}

// Counter returns the counter SUFFIX in this scope, creating it once.
// Calling it again with the same name returns the same counter, so a
// recompiled cluster keeps counting where the old one stopped.
func (sc Scope) Counter(suffix string) *Counter { return sc.get(suffix, KindCounter, nil).Counter }

// Gauge returns the gauge SUFFIX in this scope, creating it once.
func (sc Scope) Gauge(suffix string) *Gauge { return sc.get(suffix, KindGauge, nil).Gauge }

// Histogram returns the histogram SUFFIX in this scope, creating it once
// with bounds (nil means DefaultBuckets).
func (sc Scope) Histogram(suffix string, bounds []float64) *Histogram {
	if bounds == nil {
		bounds = DefaultBuckets
	}
	return sc.get(suffix, KindHistogram, bounds).Histogram
}

// Remove drops every stat of a scope (used when a cluster or listener is
// removed for good).
func (s *Store) Remove(kind, name string) {
	prefix := Scope{kind: kind, name: name}.fullName("")
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := range s.stats {
		if strings.HasPrefix(n, prefix) {
			delete(s.stats, n)
		}
	}
}

// Each returns every stat sorted by name. The slice is a fresh copy; the
// stats in it are live.
func (s *Store) Each() []*Stat {
	out := s.all()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Store) all() []*Stat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Stat, 0, len(s.stats))
	for _, st := range s.stats {
		out = append(out, st)
	}
	return out
}

// Get returns the stat with the full Envoy name, or nil.
func (s *Store) Get(name string) *Stat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[name]
}

// CounterValue returns the value of the named counter, or 0 when absent.
func (s *Store) CounterValue(name string) uint64 {
	if st := s.Get(name); st != nil && st.Counter != nil {
		return st.Counter.Value()
	}
	return 0
}

// ResetCounters sets every counter to zero (admin /reset_counters); gauges
// and histograms keep their values, as in Envoy.
func (s *Store) ResetCounters() {
	for _, st := range s.Each() {
		if st.Counter != nil {
			st.Counter.v.Store(0)
		}
	}
}

// responseCodeTag applies Envoy's response-code tag extractors to a
// Prometheus name: ..._rq_503 becomes ..._rq{response_code="503"} and
// ..._rq_5xx becomes ..._rq_xx{response_code_class="5"}.
func responseCodeTag(name string) (base, label string, ok bool) {
	i := strings.LastIndexByte(name, '_')
	if i < 3 || !strings.HasSuffix(name[:i], "_rq") {
		return "", "", false
	}
	tail := name[i+1:]
	switch {
	case len(tail) == 3 && isDigit(tail[0]) && isDigit(tail[1]) && isDigit(tail[2]):
		return name[:i], `response_code="` + tail + `"`, true
	case len(tail) == 3 && isDigit(tail[0]) && tail[1:] == "xx":
		return name[:i] + "_xx", `response_code_class="` + tail[:1] + `"`, true
	}
	return "", "", false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
