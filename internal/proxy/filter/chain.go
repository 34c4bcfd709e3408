package filter

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Status is what a filter's Decode tells the connection manager.
type Status uint8

const (
	// Continue hands the request to the next filter.
	Continue Status = iota
	// Stop ends the chain: the filter answered the request (a local
	// reply) or, for the router, forwarded it.
	Stop
)

// Filter is one compiled filter of a chain. It is immutable and shared by
// every request of the connection managers using it; per-request state
// lives in the Stream.
type Filter interface {
	// Decode runs on the request headers, in chain order. perRoute is the
	// most specific per-route config of this filter for the selected route
	// (nil when there is none or no route matched).
	Decode(s Stream, perRoute any) Status
}

// Stream is one request as filters see it; the connection manager
// implements it. Nothing in it allocates.
type Stream interface {
	// Header returns a request header by lower-case name.
	Header(name string) ([]byte, bool)
	// Method returns the request method.
	Method() []byte
	// Forwarding reports whether a route matched and its action forwards
	// to a cluster (not a redirect or direct response).
	Forwarding() bool
	// Rand returns a uniform random number (injected in tests).
	Rand() uint64
	// Delay holds the request for d as an injected fault delay (response
	// flag DI).
	Delay(d time.Duration)
	// Abort answers with a fault abort (response flag FI): a gRPC request
	// gets grpcStatus when it is >= 0, every other request the HTTP
	// status.
	Abort(status, grpcStatus int, body string)
	// Reply answers with status and no body.
	Reply(status int)
	// SetResponseHeader sets a header on the response the request gets,
	// whether it comes from upstream or is a local reply of this filter or
	// a later one. It is the filter's encode step: Envoy encodes a
	// response through every filter in reverse order, and a filter whose
	// decode never ran (it follows the one that answered) adds nothing, so
	// when two filters set one header the earlier filter's value wins.
	// name and value must stay valid until the request ends.
	SetResponseHeader(name, value []byte)
	// Forward hands the request to the router; only the terminal filter
	// calls it.
	Forward()

	// Path returns the request path, with the query.
	Path() []byte
	// Conn returns the downstream connection.
	Conn() *Conn
	// RemoteIP returns Envoy's downstream remote address: the
	// x-forwarded-for entry xff_num_trusted_hops from the right (the
	// connection's peer appended first when use_remote_address is set),
	// or the connection's peer when there is none.
	RemoteIP() netip.Addr
	// Deny answers 403 "RBAC: access denied" (response flag RBAC) with
	// details as the response code details, and debug-logs the denial.
	Deny(details string)
	// LogRBAC debug-logs an RBAC decision that does not deny: a shadow
	// rule set's outcome, or the policy a LOG (Istio AUDIT) rule set
	// matched. p is the policy that decided, nil when none matched.
	LogRBAC(shadow, allowed bool, p *RBACPolicy)

	// Authn returns the exchange's JWT authentication metadata, which the
	// jwt_authn filter sets and RBAC metadata principals read; it may be
	// nil where there is no request (a connection).
	Authn() *Authn
	// SetRequestHeader replaces the request header name (lower case) for
	// the upstream request; DelRequestHeader removes it.
	SetRequestHeader(name string, value []byte)
	DelRequestHeader(name string)
	// Unauthorized answers 401 with body (the JWT failure) and details as
	// the response code details, with a www-authenticate: Bearer header.
	Unauthorized(body, details string)
}

// Conn is the downstream connection as filters see it.
type Conn struct {
	// Remote is the connection's peer (Envoy's direct remote address);
	// Local is the address it was sent to (the original destination when
	// the listener restores it).
	Remote, Local netip.AddrPort
	// SNI is the server name a TLS client asked for ("" otherwise).
	SNI string
	// PeerCertificate reports that the TLS client presented a certificate
	// the listener's validation accepted; PeerPrincipal is its first URI
	// SAN (the SPIFFE identity), else its first DNS SAN, else its subject.
	PeerCertificate bool
	PeerPrincipal   string
}

// Builder makes one kind of filter: it compiles an http_filters entry's
// typed_config into a Filter, and typed_per_filter_config entries into the
// per-route values that Filter's Decode receives.
type Builder struct {
	// Name is the well-known filter name (envoy.filters.http.fault); it
	// identifies the filter only when an http_filters entry has no
	// typed_config, as the type URL does otherwise.
	Name string
	// terminal marks the router: it ends the chain.
	terminal   bool
	config     protoreflect.MessageType
	build      func(proto.Message, string) (Filter, error)
	routeType  protoreflect.MessageType
	buildRoute func(proto.Message, string) (any, error)
}

// newBuilder makes a Builder for a filter configured by a C.
func newBuilder[C proto.Message](name string, build func(C, string) (Filter, error)) *Builder {
	var c C
	return &Builder{
		Name:   name,
		config: c.ProtoReflect().Type(),
		build:  func(m proto.Message, path string) (Filter, error) { return build(m.(C), path) },
	}
}

// withRoute adds a per-route config of type R, compiled by build.
func withRoute[R proto.Message](b *Builder, build func(R, string) (any, error)) *Builder {
	var r R
	b.routeType = r.ProtoReflect().Type()
	b.buildRoute = func(m proto.Message, path string) (any, error) { return build(m.(R), path) }
	return b
}

// byConfig finds the builder whose typed_config is the message name.
func byConfig(name protoreflect.FullName) *Builder {
	for _, b := range builders {
		if b.config.Descriptor().FullName() == name {
			return b
		}
	}
	return nil
}

func byName(name string) *Builder {
	for _, b := range builders {
		if b.Name == name {
			return b
		}
	}
	return nil
}

func byRouteConfig(name protoreflect.FullName) *Builder {
	for _, b := range builders {
		if b.routeType != nil && b.routeType.Descriptor().FullName() == name {
			return b
		}
	}
	return nil
}

// Link is one filter of a compiled chain.
type Link struct {
	// Name is the http_filters entry's name, the key of its
	// typed_per_filter_config entries.
	Name   string
	Filter Filter
	kind   *Builder
}

// Chain is a compiled http_filters list; it ends with the router.
type Chain []Link

// defaultChain is what an HCM without http_filters runs.
var defaultChain = Chain{{Name: router.Name, Filter: routerFilter{}, kind: router}}

// CompileChain compiles an HCM's http_filters in order; path names the
// field in errors. An empty list is the router alone. A filter the
// registry does not know is an error naming it, unless it is marked
// is_optional (then it is left out, as Envoy does).
func CompileChain(fs []*hcmv3.HttpFilter, path string) (Chain, error) {
	if len(fs) == 0 {
		return defaultChain, nil
	}
	var c Chain
	for i, f := range fs {
		fpath := fmt.Sprintf("%s[%d]", path, i)
		if len(c) > 0 && c[len(c)-1].kind.terminal {
			return nil, fmt.Errorf("%s: %q follows the terminal filter %q", fpath, f.GetName(), c[len(c)-1].Name)
		}
		if f.GetName() == "" {
			return nil, fmt.Errorf("%s.name: must not be empty", fpath)
		}
		if f.GetDisabled() {
			return nil, fmt.Errorf("%s.disabled: filters disabled by default (enabled per route) are not supported", fpath)
		}
		if f.GetConfigDiscovery() != nil {
			if f.GetIsOptional() {
				continue
			}
			return nil, fmt.Errorf("%s.config_discovery: filter %q: extension config discovery is not supported by trellis-proxy (mark it is_optional to skip it)", fpath, f.GetName())
		}
		if IsStatsFilter(f) {
			continue // telemetry's config, compiled by httpconn.Compile
		}
		var b *Builder
		var m proto.Message
		if a := f.GetTypedConfig(); a != nil {
			if b = byConfig(a.MessageName()); b == nil {
				if f.GetIsOptional() {
					continue
				}
				return nil, fmt.Errorf("%s.typed_config: filter %q of type %s is not supported by trellis-proxy (mark it is_optional to skip it)", fpath, f.GetName(), a.GetTypeUrl())
			}
			m = b.config.New().Interface()
			if err := a.UnmarshalTo(m); err != nil {
				return nil, fmt.Errorf("%s.typed_config: %w", fpath, err)
			}
		} else {
			if b = byName(f.GetName()); b == nil {
				if f.GetIsOptional() {
					continue
				}
				return nil, fmt.Errorf("%s.name: filter %q is not supported by trellis-proxy (mark it is_optional to skip it)", fpath, f.GetName())
			}
			m = b.config.New().Interface()
		}
		flt, err := b.build(m, fpath+".typed_config")
		if err != nil {
			return nil, err
		}
		for _, l := range c {
			if l.Name == f.GetName() {
				return nil, fmt.Errorf("%s.name: %q is used by two filters", fpath, f.GetName())
			}
		}
		c = append(c, Link{Name: f.GetName(), Filter: flt, kind: b})
	}
	if len(c) == 0 || !c[len(c)-1].kind.terminal {
		return nil, fmt.Errorf("%s: the last filter must be %s", path, router.Name)
	}
	return c, nil
}

// RouteConfig is one compiled typed_per_filter_config entry (or a legacy
// route field that configures a filter, such as a virtual host's cors).
type RouteConfig struct {
	// Name is the filter name the entry is keyed by; "" for a legacy
	// field, which configures every filter of its kind.
	Name  string
	Value any
	kind  *Builder
}

// RouteConfigs are the per-filter configs a route sees, most specific
// first (route, virtual host, route configuration, then legacy fields).
type RouteConfigs []RouteConfig

// For returns the most specific config of the chain's filter l, or nil.
func (rc RouteConfigs) For(l *Link) any {
	for i := range rc {
		if c := &rc[i]; (c.Name == l.Name || c.Name == "") && c.kind == l.kind {
			return c.Value
		}
	}
	return nil
}

// CompileRouteConfigs compiles a typed_per_filter_config map; path names
// the field holding it. The config's type picks the builder; an entry of
// an unknown type is an error unless it is wrapped in a FilterConfig
// marked is_optional.
func CompileRouteConfigs(m map[string]*anypb.Any, path string) (RouteConfigs, error) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out RouteConfigs
	for _, name := range names {
		a := m[name]
		fpath := fmt.Sprintf("%s.typed_per_filter_config[%q]", path, name)
		if path == "" {
			fpath = fpath[1:]
		}
		if name == "" {
			return nil, fmt.Errorf("%s: the key must name a filter", fpath)
		}
		optional := false
		if a.MessageName() == "envoy.config.route.v3.FilterConfig" {
			var fc routev3.FilterConfig
			if err := a.UnmarshalTo(&fc); err != nil {
				return nil, fmt.Errorf("%s: %w", fpath, err)
			}
			if fc.GetDisabled() {
				return nil, fmt.Errorf("%s.disabled: disabling a filter per route is not supported", fpath)
			}
			a, optional, fpath = fc.GetConfig(), fc.GetIsOptional(), fpath+".config"
			if a == nil {
				return nil, fmt.Errorf("%s: must be set", fpath)
			}
		}
		b := byRouteConfig(a.MessageName())
		if b == nil {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s: filter %q: per-route config of type %s is not supported by trellis-proxy", fpath, name, a.GetTypeUrl())
		}
		msg := b.routeType.New().Interface()
		if err := a.UnmarshalTo(msg); err != nil {
			return nil, fmt.Errorf("%s: %w", fpath, err)
		}
		v, err := b.buildRoute(msg, fpath)
		if err != nil {
			return nil, err
		}
		out = append(out, RouteConfig{Name: name, Value: v, kind: b})
	}
	return out, nil
}

// Merge returns the configs of rc followed by those of less specific
// whose names rc does not already configure.
func (rc RouteConfigs) Merge(less RouteConfigs) RouteConfigs {
	out := append(RouteConfigs(nil), rc...)
next:
	for _, c := range less {
		for _, have := range rc {
			if have.Name == c.Name {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

// IsStatsFilter reports whether f is Istio's stats filter (istio.stats, a
// TypedStruct of stats.PluginConfig): not a request filter but the
// configuration of the connection manager's standard metrics.
func IsStatsFilter(f *hcmv3.HttpFilter) bool {
	return f.GetTypedConfig().MessageName() == StatsTypedStruct
}

// StatsTypedStruct is the message the istio.stats filter's config comes
// in (its type_url says stats.PluginConfig).
const StatsTypedStruct = "udpa.type.v1.TypedStruct"
