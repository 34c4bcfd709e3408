package validate

import (
	"sort"

	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/logexpr"
)

// telemetry checks a Telemetry (telemetry.istio.io v1 and v1alpha1).
// Trellis implements the tracing and accessLogging sections; the metrics
// section is rejected, naming the field, until the proxy implements it, so
// that a Telemetry is never half applied.
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
	if len(t.GetMetrics()) > 0 {
		c.errorf(spec.Field("metrics"), "not supported by Trellis yet: the proxy always reports Istio's standard metrics; remove the section")
	}
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
