package xdsclient

import (
	"fmt"
	"sort"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Virtual host discovery (Envoy's VHDS, Delta ADS only). A route
// configuration that comes with vhds set carries no virtual hosts: the
// client subscribes to VirtualHost resources with the configuration's name
// (Envoy's namespace subscription: every "<name>/<host>" resource) and
// hands the handler each such configuration with its virtual hosts joined
// in, so the handler always sees whole route configurations. An update of
// one virtual host is applied as one new set of route configurations
// (atomically, or NACKed with the last good set kept). A configuration
// waits for its first virtual hosts before it is handed over, as Envoy's
// does.

// Protobuf field numbers of envoy.config.route.v3.RouteConfiguration.
const (
	rcVirtualHosts protowire.Number = 2
	rcVhds         protowire.Number = 9
)

// usesVHDS reports whether an encoded route configuration sets vhds,
// reading only its top-level fields (the full tables of routes not on
// VHDS are not decoded).
func usesVHDS(b []byte) (bool, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false, protowire.ParseError(n)
		}
		b = b[n:]
		if num == rcVhds {
			return true, nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return false, nil
}

// joinVirtualHosts returns the encoded route configuration rc without its
// vhds field and with the encoded virtual hosts appended (concatenated
// protobuf fields merge, so this is the configuration with those virtual
// hosts).
func joinVirtualHosts(rc []byte, vhosts [][]byte) ([]byte, error) {
	size := len(rc)
	for _, v := range vhosts {
		size += len(v) + 8
	}
	out := make([]byte, 0, size)
	for b := rc; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if num != rcVhds {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	for _, v := range vhosts {
		out = protowire.AppendTag(out, rcVirtualHosts, protowire.BytesType)
		out = protowire.AppendBytes(out, v)
	}
	return out, nil
}

// vhdsNamespace returns the route configuration a virtual host resource
// belongs to ("80" of "80/reviews:80").
func vhdsNamespace(name string) (string, bool) {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 {
		return "", false
	}
	return name[:i], true
}

// vhdsRoutes returns the names of the route configurations of a set that
// use VHDS.
func vhdsRoutes(routes map[string]*Resource) (map[string]bool, error) {
	out := map[string]bool{}
	for n, r := range routes {
		ok, err := usesVHDS(r.Resource.GetValue())
		if err != nil {
			return nil, fmt.Errorf("route configuration %q: %w", n, err)
		}
		if ok {
			out[n] = true
		}
	}
	return out, nil
}

// routeSet is what the handler gets for RDS: the route configurations,
// those on VHDS joined with their virtual hosts. A configuration on VHDS
// whose virtual hosts have not been answered since it was subscribed is
// left out, as one not yet received: the listeners naming it keep warming
// (or keep their previous version) instead of serving a table without
// hosts, and the other configurations are not held back. c.mu held.
func (c *Client) routeSet(routes, vhosts map[string]*Resource) (set map[string]*anypb.Any, err error) {
	on, err := vhdsRoutes(routes)
	if err != nil {
		return nil, err
	}
	byRoute := map[string][]string{}
	for n := range vhosts {
		if ns, ok := vhdsNamespace(n); ok && on[ns] {
			byRoute[ns] = append(byRoute[ns], n)
		}
	}
	set = make(map[string]*anypb.Any, len(routes))
	for n, r := range routes {
		if !on[n] {
			set[n] = r.Resource
			continue
		}
		if !c.vhdsAnswered[n] {
			continue
		}
		names := byRoute[n]
		sort.Strings(names)
		parts := make([][]byte, len(names))
		for i, vn := range names {
			parts[i] = vhosts[vn].Resource.GetValue()
		}
		b, err := joinVirtualHosts(r.Resource.GetValue(), parts)
		if err != nil {
			return nil, fmt.Errorf("route configuration %q: %w", n, err)
		}
		set[n] = &anypb.Any{TypeUrl: resourcev3.RouteType, Value: b}
	}
	return set, nil
}

// answeredNamespaces returns the subscribed route configurations a VHDS
// response answers, from prev and next (next holds prev's entries except
// those the response carried or removed): those whose virtual hosts it
// carries or removes. A response with neither answers every subscription (the server had nothing to add: an
// empty namespace, or a reconnect where the client already holds it all).
// A response that changes other namespaces does not answer a newer
// subscription it may have crossed on the wire.
func answeredNamespaces(prev, next map[string]*Resource, subscribed map[string]bool) []string {
	touched := map[string]bool{}
	for n, r := range next {
		if o, ok := prev[n]; !ok || o != r {
			if ns, ok := vhdsNamespace(n); ok {
				touched[ns] = true
			}
		}
	}
	for n := range prev {
		if _, ok := next[n]; !ok {
			if ns, ok := vhdsNamespace(n); ok {
				touched[ns] = true
			}
		}
	}
	var out []string
	for ns := range subscribed {
		if len(touched) == 0 || touched[ns] {
			out = append(out, ns)
		}
	}
	return out
}

// checkVirtualHosts rejects virtual hosts outside the subscribed route
// configurations. c.mu held.
func (c *Client) checkVirtualHosts(next map[string]*Resource) error {
	subscribed := c.types[resourcev3.VirtualHostType].subscribed
	for n := range next {
		ns, ok := vhdsNamespace(n)
		if !ok || !subscribed[ns] {
			return fmt.Errorf("virtual host %q: not named <route configuration>/<host> of a route configuration on VHDS (%s)", n, strings.Join(sortedKeys(subscribed), ", "))
		}
	}
	return nil
}

// VHDSMetadataKey is the node metadata field ("true") that asks the control
// plane for virtual host discovery; trellisd's ADS server reads it
// (internal/xds/server.VHDSMetadataKey, the same string).
const VHDSMetadataKey = "TRELLIS_VHDS"

// RouteConfigs returns the accepted route configurations as the handler
// sees them, those on VHDS with their virtual hosts, sorted by name (for
// config dumps).
func (c *Client) RouteConfigs() []Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	routes := c.types[resourcev3.RouteType].resources
	set, err := c.routeSet(routes, c.types[resourcev3.VirtualHostType].resources)
	out := make([]Resource, 0, len(routes))
	for n, r := range routes {
		cp := *r
		if a, ok := set[n]; ok && err == nil {
			cp.Resource = a
		}
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
