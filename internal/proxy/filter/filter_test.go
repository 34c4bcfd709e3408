package filter

import (
	"strings"
	"testing"
	"time"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestFaultSampling(t *testing.T) {
	f, err := CompileFault(&faultv3.HTTPFault{
		Delay: &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(5 * time.Second)},
			Percentage:         &typev3.FractionalPercent{Numerator: 100},
		},
		Abort: &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: 500},
			Percentage: &typev3.FractionalPercent{Numerator: 5000, Denominator: typev3.FractionalPercent_TEN_THOUSAND},
		},
	}, "fault")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		rDelay, rAbort uint64
		wantDelay      time.Duration
		wantAbort      bool
	}{
		{name: "abort below half", rDelay: 0, rAbort: 4999, wantDelay: 5 * time.Second, wantAbort: true},
		{name: "no abort at half", rDelay: 99, rAbort: 5000, wantDelay: 5 * time.Second},
		{name: "abort wraps modulo denominator", rDelay: 1, rAbort: 10000 + 10, wantDelay: 5 * time.Second, wantAbort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, a := f.Decide(tt.rDelay, tt.rAbort)
			if d != tt.wantDelay || a != tt.wantAbort {
				t.Errorf("got %v %v, want %v %v", d, a, tt.wantDelay, tt.wantAbort)
			}
		})
	}
	// Over every residue the abort rate is exactly 50 %.
	n := 0
	for r := uint64(0); r < 10000; r++ {
		if _, a := f.Decide(0, r); a {
			n++
		}
	}
	if n != 5000 {
		t.Errorf("got %d aborts over 10000 residues, want 5000", n)
	}
}

func TestFaultCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		f    *faultv3.HTTPFault
		want string
	}{
		{name: "header abort", f: &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HeaderAbort_{}}}, want: "fault.abort: set http_status or grpc_status"},
		{name: "status out of range", f: &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 100}}}, want: "fault.abort.http_status: 100"},
		{name: "header delay", f: &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_HeaderDelay_{}}}, want: "fault.delay: only fixed_delay"},
		{name: "upstream cluster", f: &faultv3.HTTPFault{UpstreamCluster: "x"}, want: "only delay and abort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileFault(tt.f, "fault")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestStringMatcher(t *testing.T) {
	tests := []struct {
		name string
		m    *matcherv3.StringMatcher
		in   string
		want bool
	}{
		{name: "exact", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jesse"}}, in: "jesse", want: true},
		{name: "exact case", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jesse"}}, in: "Jesse"},
		{name: "exact ignore case", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "Jesse"}, IgnoreCase: true}, in: "jESSE", want: true},
		{name: "prefix", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/api"}}, in: "/api/x", want: true},
		{name: "suffix", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".com"}}, in: "a.com", want: true},
		{name: "contains ignore case", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "mobile"}, IgnoreCase: true}, in: "A Mobile UA", want: true},
		{name: "regex is anchored", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "v[0-9]"}}}, in: "xv1", want: false},
		{name: "regex whole", m: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "v[0-9]"}}}, in: "v1", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm, err := CompileStringMatcher(tt.m, "m")
			if err != nil {
				t.Fatal(err)
			}
			if got := sm.Match([]byte(tt.in)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
