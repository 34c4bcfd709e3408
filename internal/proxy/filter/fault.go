package filter

import (
	"fmt"
	"time"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// Fraction is a compiled FractionalPercent: it hits when a uniform random
// number modulo Denominator is below Numerator.
type Fraction struct {
	Numerator, Denominator uint64
}

// CompileFraction converts a FractionalPercent; nil means 100 %, Envoy's
// default for a fault's percentage... (callers pass the default they
// need).
func CompileFraction(p *typev3.FractionalPercent, def Fraction) Fraction {
	if p == nil {
		return def
	}
	d := uint64(100)
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	}
	n := uint64(p.GetNumerator())
	if n > d {
		n = d
	}
	return Fraction{Numerator: n, Denominator: d}
}

// Hit samples the fraction with the random number r.
func (f Fraction) Hit(r uint64) bool {
	if f.Denominator == 0 {
		return false
	}
	return r%f.Denominator < f.Numerator
}

// Fault is a compiled HTTPFault.
type Fault struct {
	// Delay is the fixed delay (0: no delay fault), applied with DelayFrac.
	Delay     time.Duration
	DelayFrac Fraction
	// AbortStatus is the HTTP status to answer (0: no HTTP abort);
	// AbortGRPC >= 0 answers a gRPC status instead.
	AbortStatus int
	AbortGRPC   int
	AbortFrac   Fraction
	// Body is the abort response body.
	Body string
}

// all is Envoy's default when a fault has no percentage.
var all = Fraction{Numerator: 100, Denominator: 100}

// CompileFault compiles an HTTPFault; path names the field in errors.
func CompileFault(f *faultv3.HTTPFault, path string) (*Fault, error) {
	c := &Fault{AbortGRPC: -1}
	switch {
	case f.GetUpstreamCluster() != "", len(f.GetHeaders()) > 0, len(f.GetDownstreamNodes()) > 0,
		f.GetResponseRateLimit() != nil, f.GetMaxActiveFaults() != nil:
		return nil, fmt.Errorf("%s: only delay and abort faults are supported (upstream_cluster, headers, downstream_nodes, response_rate_limit, max_active_faults are not)", path)
	}
	if d := f.GetDelay(); d != nil {
		fd, ok := d.GetFaultDelaySecifier().(*faultcommonv3.FaultDelay_FixedDelay)
		if !ok {
			return nil, fmt.Errorf("%s.delay: only fixed_delay is supported", path)
		}
		if err := fd.FixedDelay.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.delay.fixed_delay: %w", path, err)
		}
		c.Delay = fd.FixedDelay.AsDuration()
		if c.Delay < 0 {
			return nil, fmt.Errorf("%s.delay.fixed_delay: must not be negative", path)
		}
		c.DelayFrac = CompileFraction(d.GetPercentage(), all)
	}
	if a := f.GetAbort(); a != nil {
		switch s := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if s.HttpStatus < 200 || s.HttpStatus > 599 {
				return nil, fmt.Errorf("%s.abort.http_status: %d is not in [200, 600)", path, s.HttpStatus)
			}
			c.AbortStatus = int(s.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			c.AbortGRPC = int(s.GrpcStatus)
		default:
			return nil, fmt.Errorf("%s.abort: set http_status or grpc_status", path)
		}
		c.AbortFrac = CompileFraction(a.GetPercentage(), all)
	}
	c.Body = "fault filter abort"
	return c, nil
}

// Decide samples the fault with two random numbers and returns the delay to
// apply and whether to abort.
func (f *Fault) Decide(rDelay, rAbort uint64) (delay time.Duration, abort bool) {
	if f.Delay > 0 && f.DelayFrac.Hit(rDelay) {
		delay = f.Delay
	}
	abort = (f.AbortStatus > 0 || f.AbortGRPC >= 0) && f.AbortFrac.Hit(rAbort)
	return delay, abort
}

// fault is envoy.filters.http.fault: its typed_config applies to every
// route, a route's per-route HTTPFault replaces it.
var fault = withRoute(newBuilder(wellknown.Fault, compileFaultFilter), compileFaultRoute)

func compileFaultFilter(f *faultv3.HTTPFault, path string) (Filter, error) {
	c, err := CompileFault(f, path)
	if err != nil {
		return nil, err
	}
	if c.Delay == 0 && c.AbortStatus == 0 && c.AbortGRPC < 0 {
		return faultFilter{}, nil // Istio's empty HTTPFault: routes decide
	}
	return faultFilter{def: c}, nil
}

func compileFaultRoute(f *faultv3.HTTPFault, path string) (any, error) { return CompileFault(f, path) }

type faultFilter struct{ def *Fault }

// Decode delays and/or aborts the request as the most specific fault
// config samples: first the delay, then the abort.
func (f faultFilter) Decode(s Stream, perRoute any) Status {
	c := f.def
	if p, ok := perRoute.(*Fault); ok {
		c = p
	}
	if c == nil {
		return Continue
	}
	delay, abort := c.Decide(s.Rand(), s.Rand())
	if delay > 0 {
		s.Delay(delay)
	}
	if !abort {
		return Continue
	}
	status := c.AbortStatus
	if status == 0 {
		status = 500
	}
	s.Abort(status, c.AbortGRPC, c.Body)
	return Stop
}
