package translate

import (
	"sort"

	udpatypev1 "github.com/cncf/xds/go/udpa/type/v1"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/tagexpr"
)

// StatsFilter is the name of Istio's stats filter, both the HTTP filter
// (before the router) and the network filter (before tcp_proxy).
const StatsFilter = "istio.stats"

// StatsConfigType is the type_url of the stats filter's config, carried in
// a TypedStruct as Istio sends it (the proto is not part of Envoy's API).
const StatsConfigType = "type.googleapis.com/stats.PluginConfig"

// metricState is the effective customization of one standard metric in
// one direction, after every applying override.
type metricState struct {
	drop   bool
	dims   map[string]string // tag -> value expression (UPSERT)
	remove map[string]bool   // tags to remove (REMOVE)
}

func (m *metricState) isDefault() bool {
	return !m.drop && len(m.dims) == 0 && len(m.remove) == 0
}

// metricsFor merges the Telemetry metrics overrides of one direction
// (client: outbound, reporter=source; server: inbound,
// reporter=destination), as Istio does: the root namespace's Telemetry,
// then the namespace's, then the workload's, each entry's overrides in
// order, so the more specific and later override wins per metric and tag.
// The result is indexed as tagexpr.Metrics.
func (s *scope) metricsFor(client bool) []metricState {
	want := telemetry.WorkloadMode_SERVER
	if client {
		want = telemetry.WorkloadMode_CLIENT
	}
	states := make([]metricState, len(tagexpr.Metrics))
	for _, t := range s.telemetries() {
		for _, m := range t.GetMetrics() {
			for _, o := range m.GetOverrides() {
				if mode := o.GetMatch().GetMode(); mode != telemetry.WorkloadMode_CLIENT_AND_SERVER && mode != want {
					continue
				}
				for i := range states {
					if !overrideSelects(o.GetMatch(), i) {
						continue
					}
					applyOverride(&states[i], o)
				}
			}
		}
	}
	return states
}

// overrideSelects reports whether a metric selector picks
// tagexpr.Metrics[i]: no selector and ALL_METRICS pick all.
func overrideSelects(sel *telemetry.MetricSelector, i int) bool {
	if cm := sel.GetCustomMetric(); cm != "" {
		return tagexpr.MetricByName(cm) == i
	}
	if sel.GetMetric() == telemetry.MetricSelector_ALL_METRICS {
		return true
	}
	return sel.GetMetric().String() == tagexpr.Metrics[i].Istio
}

func applyOverride(st *metricState, o *telemetry.MetricsOverrides) {
	if d := o.GetDisabled(); d != nil {
		st.drop = d.GetValue()
	}
	names := make([]string, 0, len(o.GetTagOverrides()))
	for n := range o.GetTagOverrides() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		to := o.GetTagOverrides()[n]
		if to.GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE {
			if st.remove == nil {
				st.remove = map[string]bool{}
			}
			st.remove[n] = true
			delete(st.dims, n)
			continue
		}
		if st.dims == nil {
			st.dims = map[string]string{}
		}
		st.dims[n] = to.GetValue()
		delete(st.remove, n)
	}
}

// statsConfig is the istio.stats filter config of one direction, or nil
// when no Telemetry customizes the metrics there (the proxy then reports
// Istio's standard metrics unchanged, as without the filter). One metrics
// entry per customized metric, in tagexpr.Metrics order.
func (s *scope) statsConfig(client bool) *anypb.Any {
	i := 0
	if client {
		i = 1
	}
	if s.stats[i].done {
		return s.stats[i].cfg
	}
	s.stats[i].done = true
	var metrics []any
	for mi, st := range s.metricsFor(client) {
		if st.isDefault() {
			continue
		}
		m := map[string]any{"name": tagexpr.Metrics[mi].Name}
		if st.drop {
			m["drop"] = true
		}
		if len(st.dims) > 0 {
			d := map[string]any{}
			for k, v := range st.dims {
				d[k] = v
			}
			m["dimensions"] = d
		}
		if len(st.remove) > 0 {
			var rm []any
			for _, k := range sortedKeys(st.remove) {
				rm = append(rm, k)
			}
			m["tags_to_remove"] = rm
		}
		metrics = append(metrics, m)
	}
	if len(metrics) == 0 {
		return nil
	}
	v, err := structpb.NewStruct(map[string]any{"metrics": metrics})
	if err != nil {
		panic("translate: stats config: " + err.Error()) // only strings, bools and lists above
	}
	s.stats[i].cfg = mustAny(&udpatypev1.TypedStruct{TypeUrl: StatsConfigType, Value: v})
	return s.stats[i].cfg
}

// statsCache holds a direction's stats filter config once computed.
type statsCache struct {
	done bool
	cfg  *anypb.Any
}

// statsHTTPFilter is the istio.stats HTTP filter of a connection manager,
// or nil.
func (s *scope) statsHTTPFilter(client bool) *hcmv3.HttpFilter {
	cfg := s.statsConfig(client)
	if cfg == nil {
		return nil
	}
	return &hcmv3.HttpFilter{Name: StatsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}
}

// statsNetworkFilter is the istio.stats network filter before a
// tcp_proxy, or nil.
func (s *scope) statsNetworkFilter(client bool) *listenerv3.Filter {
	cfg := s.statsConfig(client)
	if cfg == nil {
		return nil
	}
	return &listenerv3.Filter{Name: StatsFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg}}
}
