package telemetry

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	udpatypev1 "github.com/cncf/xds/go/udpa/type/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/tagexpr"
)

// StatsConfigType is the type_url of the istio.stats filter's config in
// its TypedStruct (trellisd's translate.StatsConfigType).
const StatsConfigType = "type.googleapis.com/stats.PluginConfig"

// MaxPerRequest bounds the distinct request-valued tag expressions
// (request.headers[...], request.host, ...) of one stats config: they are
// part of a series' key.
const MaxPerRequest = 8

// maxInterned bounds the request attribute values and the tuples of them
// a config keeps interned; past it a new value costs an allocation per
// request.
const maxInterned = 4096

// Metrics is a compiled istio.stats config: which standard metrics are
// dropped and how each one's labels differ from Istio's standard set.
// Compile it with CompileMetrics; nil means Istio's standard metrics.
// Equal configs compile to the same pointer, so a recompiled listener
// keeps counting into the same series.
type Metrics struct {
	metric [numMetrics]metricConfig
	// perRequest are the request-valued expressions; Key.Tags[i] holds
	// the value of perRequest[i] for one request.
	perRequest []tagexpr.Expr

	mu     sync.RWMutex
	values map[string]string        // interned request attribute values
	tuples map[TagValues]*TagValues // interned Key.Tags
}

// TagValues are one request's values of a config's request-valued tags,
// in the order of Metrics.perRequest. Interned, so that a series key
// holds one pointer, not the strings.
type TagValues [MaxPerRequest]string

// The standard metrics, indexed as tagexpr.Metrics.
const (
	mRequests = iota
	mDuration
	mRequestBytes
	mResponseBytes
	mRequestMessages
	mResponseMessages
	mTCPOpened
	mTCPClosed
	mTCPReceived
	mTCPSent
	numMetrics
)

// metricConfig is one metric's customization.
type metricConfig struct {
	drop   bool
	remove map[string]bool
	// tags are the upserted tags (standard ones replaced in place, others
	// appended in name order).
	tags map[string]tagValue
}

// tagValue is an upserted tag's value: a per-series expression or a
// per-request slot.
type tagValue struct {
	expr tagexpr.Expr
	slot int // index into Key.Tags, or -1
}

// maxConfigs bounds the distinct configs interned (a mesh has a few per
// proxy); past it a recompiled config starts new series.
const maxConfigs = 1024

var (
	metricsMu   sync.Mutex
	metricsByID = map[string]*Metrics{}
)

// CompileMetrics compiles the value of an istio.stats TypedStruct
// (stats.PluginConfig); path names it in errors. Only its metrics list is
// supported (name, dimensions, tags_to_remove, drop); anything else is an
// error naming the field.
func CompileMetrics(v *structpb.Struct, path string) (*Metrics, error) {
	m := &Metrics{}
	var perRequest []string
	slotOf := map[string]int{}
	names := sortedFields(v)
	for _, f := range names {
		if f != "metrics" {
			return nil, fmt.Errorf("%s.%s: not supported by trellis-proxy (supported: metrics)", path, f)
		}
	}
	list := v.GetFields()["metrics"]
	if list != nil && list.GetListValue() == nil {
		return nil, fmt.Errorf("%s.metrics: must be a list", path)
	}
	for i, e := range list.GetListValue().GetValues() {
		ep := fmt.Sprintf("%s.metrics[%d]", path, i)
		s := e.GetStructValue()
		if s == nil {
			return nil, fmt.Errorf("%s: must be an object", ep)
		}
		var targets []int
		for _, f := range sortedFields(s) {
			switch f {
			case "name", "drop", "dimensions", "tags_to_remove":
			default:
				return nil, fmt.Errorf("%s.%s: not supported by trellis-proxy (supported: name, dimensions, tags_to_remove, drop)", ep, f)
			}
		}
		name, ok := stringField(s, "name")
		if !ok {
			return nil, fmt.Errorf("%s.name: must be a string", ep)
		}
		if name == "" {
			for j := 0; j < numMetrics; j++ {
				targets = append(targets, j)
			}
		} else if j := tagexpr.MetricByName(name); j >= 0 {
			targets = []int{j}
		} else {
			return nil, fmt.Errorf("%s.name: %q is not a standard metric; use one of %s, or leave it empty for all", ep, name, tagexpr.MetricNames())
		}
		drop := false
		if d := s.GetFields()["drop"]; d != nil {
			b, isBool := d.GetKind().(*structpb.Value_BoolValue)
			if !isBool {
				return nil, fmt.Errorf("%s.drop: must be a bool", ep)
			}
			drop = b.BoolValue
		}
		var remove []string
		if r := s.GetFields()["tags_to_remove"]; r != nil {
			if r.GetListValue() == nil {
				return nil, fmt.Errorf("%s.tags_to_remove: must be a list of tag names", ep)
			}
			for k, t := range r.GetListValue().GetValues() {
				sv, isStr := t.GetKind().(*structpb.Value_StringValue)
				if !isStr || !tagexpr.LabelName(sv.StringValue) {
					return nil, fmt.Errorf("%s.tags_to_remove[%d]: must be a Prometheus label name", ep, k)
				}
				remove = append(remove, sv.StringValue)
			}
		}
		type dim struct {
			name string
			val  tagValue
		}
		var dims []dim
		if d := s.GetFields()["dimensions"]; d != nil {
			ds := d.GetStructValue()
			if ds == nil {
				return nil, fmt.Errorf("%s.dimensions: must be a map of tag name to value expression", ep)
			}
			for _, tn := range sortedFields(ds) {
				dp := fmt.Sprintf("%s.dimensions[%s]", ep, tn)
				if !tagexpr.LabelName(tn) {
					return nil, fmt.Errorf("%s: %q is not a Prometheus label name", dp, tn)
				}
				sv, isStr := ds.GetFields()[tn].GetKind().(*structpb.Value_StringValue)
				if !isStr {
					return nil, fmt.Errorf("%s: must be a string expression", dp)
				}
				x, err := tagexpr.Parse(sv.StringValue)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", dp, err)
				}
				tv := tagValue{expr: x, slot: -1}
				if x.PerRequest() {
					key := x.String()
					slot, seen := slotOf[key]
					if !seen {
						if len(perRequest) == MaxPerRequest {
							return nil, fmt.Errorf("%s: more than %d distinct request-valued tag expressions in one config", dp, MaxPerRequest)
						}
						slot = len(perRequest)
						slotOf[key] = slot
						perRequest = append(perRequest, key)
						m.perRequest = append(m.perRequest, x)
					}
					tv.slot = slot
				}
				dims = append(dims, dim{tn, tv})
			}
		}
		for _, j := range targets {
			mc := &m.metric[j]
			if drop {
				mc.drop = true
			}
			for _, t := range remove {
				if mc.remove == nil {
					mc.remove = map[string]bool{}
				}
				mc.remove[t] = true
				delete(mc.tags, t)
			}
			for _, d := range dims {
				if mc.tags == nil {
					mc.tags = map[string]tagValue{}
				}
				mc.tags[d.name] = d.val
				delete(mc.remove, d.name)
			}
		}
	}
	return intern(m), nil
}

// id is a canonical rendering of the config, for interning.
func (m *Metrics) id() string {
	var b strings.Builder
	for i := range m.metric {
		mc := &m.metric[i]
		fmt.Fprintf(&b, "%d:%v:", i, mc.drop)
		for _, t := range sortedKeys(mc.remove) {
			b.WriteString("-" + t + ",")
		}
		for _, t := range sortedKeys(mc.tags) {
			tv := mc.tags[t]
			fmt.Fprintf(&b, "+%s=%s@%d,", t, tv.expr, tv.slot)
		}
		b.WriteByte(';')
	}
	return b.String()
}

func intern(m *Metrics) *Metrics {
	id := m.id()
	metricsMu.Lock()
	defer metricsMu.Unlock()
	if got, ok := metricsByID[id]; ok {
		return got
	}
	if len(metricsByID) < maxConfigs {
		metricsByID[id] = m
	}
	return m
}

// Attributes are the request attributes a per-request tag reads.
// Implementations must not allocate.
type Attributes interface {
	Header(name string) []byte
	Method() []byte
	Path() []byte
	Host() []byte
	Protocol() string
}

// PerRequest reports whether the config has request-valued tags, that is
// whether Fill must run for each request.
func (m *Metrics) PerRequest() bool { return m != nil && len(m.perRequest) > 0 }

// Fill evaluates the request-valued tags of k's config into k.Tags. A
// combination of values seen before does not allocate.
func (m *Metrics) Fill(k *Key, a Attributes) {
	var tv TagValues
	for i, x := range m.perRequest {
		tv[i] = m.eval(x, k, a)
	}
	m.mu.RLock()
	p, ok := m.tuples[tv]
	m.mu.RUnlock()
	if !ok {
		p = new(TagValues)
		*p = tv
		m.mu.Lock()
		if q, ok := m.tuples[tv]; ok {
			p = q
		} else if len(m.tuples) < maxInterned {
			if m.tuples == nil {
				m.tuples = map[TagValues]*TagValues{}
			}
			m.tuples[tv] = p
		}
		m.mu.Unlock()
	}
	k.Tags = p
}

func (m *Metrics) eval(x tagexpr.Expr, k *Key, a Attributes) string {
	for _, t := range x {
		var v []byte
		switch t.Source {
		case tagexpr.Literal:
			return t.Name
		case tagexpr.Header:
			if a != nil {
				v = a.Header(t.Name)
			}
		case tagexpr.Host:
			if a != nil {
				v = a.Host()
			}
		case tagexpr.Method:
			if a != nil {
				v = a.Method()
			}
		case tagexpr.Path:
			if a != nil {
				v = a.Path()
			}
		case tagexpr.URLPath:
			if a != nil {
				v = a.Path()
				for i, c := range v {
					if c == '?' {
						v = v[:i]
						break
					}
				}
			}
		case tagexpr.Protocol:
			if a != nil {
				if p := a.Protocol(); p != "" {
					return p
				}
			}
		default:
			if s := peerField(t, k); s != "" {
				return s
			}
		}
		if len(v) > 0 {
			return m.intern(v)
		}
	}
	return ""
}

func (m *Metrics) intern(v []byte) string {
	m.mu.RLock()
	s, ok := m.values[string(v)]
	m.mu.RUnlock()
	if ok {
		return s
	}
	s = string(v)
	m.mu.Lock()
	if m.values == nil {
		m.values = map[string]string{}
	}
	if len(m.values) < maxInterned {
		m.values[s] = s
	}
	m.mu.Unlock()
	return s
}

// peerField is a field of upstream_peer (the destination, known on the
// source side) or downstream_peer (the source, known on the destination
// side); "" when the peer is not known there.
func peerField(t tagexpr.Term, k *Key) string {
	var p *Peer
	switch {
	case t.Source == tagexpr.UpstreamPeer && k.Reporter == Source:
		p = k.Destination
	case t.Source == tagexpr.DownstreamPeer && k.Reporter == Destination:
		p = k.Source
	}
	if p == nil {
		return ""
	}
	switch t.Name {
	case "app":
		return p.App
	case "cluster":
		return p.Cluster
	case "namespace":
		return p.Namespace
	case "revision":
		return p.CanonicalRevision
	case "service":
		return p.CanonicalService
	case "version":
		return p.Version
	case "workload":
		return p.Workload
	}
	return ""
}

// labelsFor renders metric i's label set for a series: the standard
// labels minus the removed ones, upserted ones replaced in place, new ones
// appended in name order. ok is false when the metric is dropped.
func (m *Metrics) labelsFor(i int, k *seriesKey, std []label) (string, bool) {
	mc := &m.metric[i]
	if mc.drop {
		return "", false
	}
	value := func(tv tagValue) string {
		v := ""
		if tv.slot >= 0 {
			if k.Tags != nil {
				v = k.Tags[tv.slot]
			}
		} else {
			v = m.eval(tv.expr, &k.Key, nil)
		}
		return orUnknown(v)
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, l := range std {
		if mc.remove[l.name] {
			continue
		}
		v := l.value
		if tv, ok := mc.tags[l.name]; ok {
			v = value(tv)
			seen[l.name] = true
		}
		addLabel(&b, l.name, v)
	}
	for _, n := range sortedKeys(mc.tags) {
		if !seen[n] {
			addLabel(&b, n, value(mc.tags[n]))
		}
	}
	return b.String(), true
}

func sortedFields(s *structpb.Struct) []string {
	out := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func stringField(s *structpb.Struct, name string) (string, bool) {
	v := s.GetFields()[name]
	if v == nil {
		return "", true
	}
	sv, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", false
	}
	return sv.StringValue, true
}

// CompileStatsFilter compiles an istio.stats filter's typed_config (a
// udpa.type.v1.TypedStruct whose type_url is stats.PluginConfig); path
// names it in errors.
func CompileStatsFilter(a *anypb.Any, path string) (*Metrics, error) {
	var ts udpatypev1.TypedStruct
	if err := a.UnmarshalTo(&ts); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ts.GetTypeUrl() != StatsConfigType {
		return nil, fmt.Errorf("%s.type_url: %q is not supported by trellis-proxy (supported: %s)", path, ts.GetTypeUrl(), StatsConfigType)
	}
	return CompileMetrics(ts.GetValue(), path+".value")
}
