package validate

import (
	"sort"

	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/logexpr"
	"github.com/trellis-mesh/trellis/internal/tagexpr"
)

// PrometheusProvider is the only metrics provider Trellis exports to:
// Istio's default, the proxy's /stats/prometheus.
const PrometheusProvider = "prometheus"

// metrics checks the metrics section: prometheus as the provider, the
// overrides' metric selectors and tag overrides.
func (c *checker) metrics(spec Path, ms []*telemetry.Metrics) {
	for i, m := range ms {
		p := spec.Field("metrics").Index(i)
		for j, pr := range m.GetProviders() {
			pp := p.Field("providers").Index(j).Field("name")
			switch pr.GetName() {
			case PrometheusProvider:
			case "":
				c.errorf(pp, "missing; name %q (or leave providers out)", PrometheusProvider)
			default:
				c.errorf(pp, "metrics provider %q is not supported: Trellis exports metrics only to %q (the sidecars' /stats/prometheus); use it or leave providers out", pr.GetName(), PrometheusProvider)
			}
		}
		if m.GetReportingInterval() != nil {
			c.errorf(p.Field("reportingInterval"), "not supported: the proxy reports long TCP connections at a fixed interval and Prometheus pulls; remove the field")
		}
		for k, o := range m.GetOverrides() {
			op := p.Field("overrides").Index(k)
			if cm := o.GetMatch().GetCustomMetric(); cm != "" && tagexpr.MetricByName(cm) < 0 {
				c.errorf(op.Field("match").Field("customMetric"), "%q is not a metric the proxy reports (custom metric definitions are not supported); name one of %s, or use match.metric", cm, tagexpr.MetricNames())
			}
			names := make([]string, 0, len(o.GetTagOverrides()))
			for n := range o.GetTagOverrides() {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				tp := op.Field("tagOverrides").Key(n)
				if !tagexpr.LabelName(n) {
					c.errorf(tp, "%q is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", n)
				}
				to := o.GetTagOverrides()[n]
				if to.GetOperation() != telemetry.MetricsOverrides_TagOverride_UPSERT {
					continue
				}
				if to.GetValue() == "" {
					c.errorf(tp.Field("value"), "missing: UPSERT needs a value expression (%s)", tagexpr.Supported)
					continue
				}
				if _, err := tagexpr.Parse(to.GetValue()); err != nil {
					c.errorf(tp.Field("value"), "%v", err)
				}
			}
		}
	}
}

// telemetry checks a Telemetry (telemetry.istio.io v1 and v1alpha1):
// its tracing, metrics and accessLogging sections. What the proxy does not
// implement is rejected, naming the field, so that a Telemetry is never
// half applied.
func (c *checker) telemetry(t *telemetry.Telemetry) {
	spec := Path("spec")
	c.selector(spec.Field("selector"), t.GetSelector())
	c.targetRefs(spec, t.GetSelector(), t.GetTargetRef(), t.GetTargetRefs())
	if t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
		c.errorf(spec.Field("targetRefs"), "Trellis does not attach Telemetry to targets yet; use selector or a namespace-wide Telemetry")
	}
	modes := map[telemetry.WorkloadMode]bool{}
	for i, tr := range t.GetTracing() {
		p := spec.Field("tracing").Index(i)
		mode := tr.GetMatch().GetMode()
		for _, m := range expandMode(mode) {
			if modes[m] {
				c.errorf(p.Field("match").Field("mode"), "%v overlaps an earlier tracing entry; give each mode one entry", mode)
			}
			modes[m] = true
		}
		if len(tr.GetProviders()) > 1 {
			c.errorf(p.Field("providers"), "only one tracing provider per workload is supported (as in Istio); keep one")
		}
		for j, pr := range tr.GetProviders() {
			if pr.GetName() == "" {
				c.errorf(p.Field("providers").Index(j).Field("name"), "missing; name a MeshConfig extensionProviders entry")
			}
		}
		if v := tr.GetRandomSamplingPercentage(); v != nil {
			c.checkPercent(p.Field("randomSamplingPercentage"), v.GetValue())
		}
		if v := tr.GetUseRequestIdForTraceSampling(); v != nil && !v.GetValue() {
			c.errorf(p.Field("useRequestIdForTraceSampling"), "false is not supported; remove the field")
		}
		if v := tr.GetEnableIstioTags(); v != nil && !v.GetValue() {
			c.errorf(p.Field("enableIstioTags"), "false is not supported: the proxy always sets Istio's span tags; remove the field")
		}
		if tr.GetDisableContextPropagation().GetValue() {
			c.errorf(p.Field("disableContextPropagation"), "true is not supported: the proxy always propagates trace context; remove the field")
		}
		names := make([]string, 0, len(tr.GetCustomTags()))
		for k := range tr.GetCustomTags() {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			tp := p.Field("customTags").Key(k)
			if k == "" {
				c.errorf(tp, "empty tag name")
			}
			switch ct := tr.GetCustomTags()[k].GetType().(type) {
			case *telemetry.Tracing_CustomTag_Literal:
				if ct.Literal.GetValue() == "" {
					c.errorf(tp.Field("literal").Field("value"), "missing")
				}
			case *telemetry.Tracing_CustomTag_Header:
				if ct.Header.GetName() == "" {
					c.errorf(tp.Field("header").Field("name"), "missing; name a request header")
				}
			case *telemetry.Tracing_CustomTag_Environment:
				if ct.Environment.GetName() == "" {
					c.errorf(tp.Field("environment").Field("name"), "missing; name an environment variable")
				}
			case *telemetry.Tracing_CustomTag_Formatter:
				c.errorf(tp.Field("formatter"), "not supported; use literal, header or environment")
			default:
				c.errorf(tp, "set one of literal, header or environment")
			}
		}
	}
	c.metrics(spec, t.GetMetrics())
	logModes := map[telemetry.WorkloadMode]bool{}
	for i, al := range t.GetAccessLogging() {
		p := spec.Field("accessLogging").Index(i)
		mode := al.GetMatch().GetMode()
		for _, m := range expandMode(mode) {
			if logModes[m] {
				c.errorf(p.Field("match").Field("mode"), "%v overlaps an earlier accessLogging entry; give each mode one entry", mode)
			}
			logModes[m] = true
		}
		for j, pr := range al.GetProviders() {
			if pr.GetName() == "" {
				c.errorf(p.Field("providers").Index(j).Field("name"), "missing; name \"envoy\" or a MeshConfig extensionProviders entry")
			}
		}
		if f := al.GetFilter(); f != nil {
			if _, err := logexpr.Parse(f.GetExpression()); err != nil {
				c.errorf(p.Field("filter").Field("expression"), "%v", err)
			}
		}
	}
}

// expandMode is the set of directions a workload mode covers.
func expandMode(m telemetry.WorkloadMode) []telemetry.WorkloadMode {
	if m == telemetry.WorkloadMode_CLIENT_AND_SERVER {
		return []telemetry.WorkloadMode{telemetry.WorkloadMode_CLIENT, telemetry.WorkloadMode_SERVER}
	}
	return []telemetry.WorkloadMode{m}
}
