package translate

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/grpc/codes"
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

// grpcStatusCode is the code of an Istio grpcStatus: a name (UNAVAILABLE,
// as grpc's codes spell them in JSON) or a number 0-16; UNKNOWN otherwise.
func grpcStatusCode(s string) uint32 {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(strconv.Quote(s))); err == nil {
		return uint32(c)
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n <= uint64(codes.Unauthenticated) {
		return uint32(n)
	}
	return uint32(codes.Unknown)
}
