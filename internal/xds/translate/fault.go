package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	networking "istio.io/api/networking/v1alpha3"
)

// PreviousHostsPredicate is the retry host predicate Istio adds so that a
// retry goes to a different endpoint.
const PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

func previousHosts() *routev3.RetryPolicy_RetryHostPredicate {
	return &routev3.RetryPolicy_RetryHostPredicate{
		Name:       PreviousHostsPredicate,
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
	}
}

// fault converts Istio fault injection into the per-route config of
// envoy.filters.http.fault. A missing percentage means every request.
func fault(f *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	if f == nil || (f.GetDelay() == nil && f.GetAbort() == nil) {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		pct := 100.0
		switch {
		case d.GetPercentage() != nil:
			pct = d.GetPercentage().GetValue()
		case d.GetPercent() != 0:
			pct = float64(d.GetPercent())
		}
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
			Percentage:         percent(pct),
		}
	}
	if a := f.GetAbort(); a != nil {
		pct := 100.0
		if a.GetPercentage() != nil {
			pct = a.GetPercentage().GetValue()
		}
		ab := &faultv3.FaultAbort{Percentage: percent(pct)}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			ab.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			ab.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: grpcStatusCode(e.GrpcStatus)}
		default:
			ab = nil
		}
		out.Abort = ab
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

var grpcCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

func grpcStatusCode(s string) uint32 {
	if c, ok := grpcCodes[s]; ok {
		return c
	}
	return 2 // UNKNOWN
}
