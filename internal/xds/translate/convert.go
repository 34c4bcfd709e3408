package translate

import (
	"math"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Small constructors shared by the builders. Nothing here reads Input.

func mustAny(m proto.Message) *anypb.Any {
	// Deterministic: a message holding a map (a Struct's fields, say)
	// must give the same bytes every time, because a resource's version
	// is a hash of its bytes and a new version retires a listener.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		// MarshalFrom fails only for a nil message or a marshal bug, both
		// programming errors in this package.
		panic("translate: marshal " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return a
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func u32v(n uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(n) }

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func exactMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func regexMatch(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// percent turns an Istio percentage (0-100, fractional) into Envoy's
// fractional percent per million.
func percent(v float64) *typev3.FractionalPercent {
	if v < 0 {
		v = 0
	}
	if v > 100 {
		v = 100
	}
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(v * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

func runtimePercent(v float64) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: percent(v)}
}

// istioMetadata builds metadata.filter_metadata["istio"] from fields.
func istioMetadata(fields map[string]*structpb.Value) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: fields}}}
}

func stringMapStruct(m map[string]string) *structpb.Value {
	f := make(map[string]*structpb.Value, len(m))
	for k, v := range m {
		f[k] = structpb.NewStringValue(v)
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: f})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func wrapU64(n uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(n) }

func optU32(n uint32) *wrapperspb.UInt32Value {
	if n == 0 {
		return nil
	}
	return u32v(n)
}

func optSeconds(d time.Duration) *wrapperspb.UInt32Value {
	if d <= 0 {
		return nil
	}
	return u32v(uint32(d / time.Second))
}

// configPath names an Istio resource the way Istio's metadata does:
// /apis/networking.istio.io/v1/namespaces/NS/KIND/NAME.
func configPath(kind, ns, name string) string {
	if ns == "" {
		ns = "default"
	}
	return "/apis/networking.istio.io/v1/namespaces/" + ns + "/" + kind + "/" + name
}

func wrapBool(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }
