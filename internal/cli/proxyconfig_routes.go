package cli

import (
	"fmt"
	"io"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

// allRoutes are the route configurations of the dump plus the listeners'
// inline ones that the dump does not already list (Envoy lists them as
// static_route_configs; other proxies may not).
func allRoutes(d *proxyDump) []*routev3.RouteConfiguration {
	out := append([]*routev3.RouteConfiguration(nil), d.routes...)
	have := func(r *routev3.RouteConfiguration) bool {
		for _, o := range out {
			if proto.Equal(o, r) {
				return true
			}
		}
		return false
	}
	for _, l := range d.listeners {
		for _, fc := range l.GetFilterChains() {
			for _, flt := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if tc := flt.GetTypedConfig(); tc != nil && tc.MessageIs(&hcm) && tc.UnmarshalTo(&hcm) == nil && hcm.GetRouteConfig() != nil && !have(hcm.GetRouteConfig()) {
					out = append(out, hcm.GetRouteConfig())
				}
			}
		}
	}
	return out
}

// printRoutes is `proxy-config route`: the route configurations, RDS and
// inline, one row per route.
func printRoutes(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var rs []*routev3.RouteConfiguration
	for _, r := range allRoutes(d) {
		if f.name == "" || r.GetName() == f.name {
			rs = append(rs, r)
		}
	}
	if f.output != "short" {
		return printProtos(w, f.output, rs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE")
	for _, rc := range rs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				vs := istioName(r.GetMetadata().GetFilterMetadata()["istio"].AsMap())
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), describeDomains(vh.GetDomains()), describeRouteMatch(r.GetMatch()), vs)
			}
		}
	}
	return tw.Flush()
}

func describeRouteMatch(m *routev3.RouteMatch) string {
	var s string
	switch {
	case m.GetPrefix() != "":
		s = m.GetPrefix() + "*"
	case m.GetPath() != "":
		s = m.GetPath()
	case m.GetSafeRegex() != nil:
		s = m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		s = m.GetPathSeparatedPrefix() + "/*"
	default:
		s = "/*"
	}
	if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 {
		s += " (with conditions)"
	}
	return s
}

// describeDomains collapses a virtual host's domains as istioctl does: the
// port variants are dropped and long lists are cut.
func describeDomains(ds []string) string {
	var out []string
	seen := map[string]bool{}
	for _, d := range ds {
		h := d
		if i := strings.LastIndexByte(d, ':'); i > 0 && !strings.Contains(d[:i], ":") {
			h = d[:i]
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if len(out) > 2 {
		return fmt.Sprintf("%s, %s + %d more...", out[0], out[1], len(out)-2)
	}
	return strings.Join(out, ", ")
}
