package server

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Virtual host discovery (Envoy's VHDS) lets a Delta client take a route
// configuration without its virtual hosts and the virtual hosts as
// resources of their own, named "<route configuration>/<host>", so an edit
// of one VirtualService sends one virtual host instead of the whole table.
//
// A generator that supports it puts two more lists in a snapshot: the
// virtual hosts (VirtualHostType) and, under VHDSRoutes, each route
// configuration in its VHDS form (virtual_hosts empty, vhds set to ADS).
// A Delta stream whose node asks for VHDS (metadata VHDSMetadataKey "true")
// is sent the VHDS forms as its route configurations; every other stream
// (State of the World, or a node that does not ask) keeps the full ones.
//
// Subscriptions to virtual hosts match by namespace, as Envoy's do: Envoy
// subscribes with the route configuration's name and expects every
// "<name>/..." virtual host; a subscription to a full "<name>/<host>" takes
// that virtual host alone.

// VHDSRoutes is the snapshot key of the VHDS forms of the route
// configurations. It is not a type URL and is never sent under this key.
const VHDSRoutes = "trellis.internal/vhds-routes"

// VHDSMetadataKey is the node metadata field ("true") with which a Delta
// client asks for virtual host discovery.
const VHDSMetadataKey = "TRELLIS_VHDS"

// WantsVHDS reports whether a node asks for virtual host discovery.
func WantsVHDS(n *corev3.Node) bool {
	v := n.GetMetadata().GetFields()[VHDSMetadataKey]
	return v.GetStringValue() == "true" || v.GetBoolValue()
}

// VirtualHostName is the VHDS resource name of a route configuration's
// virtual host: "<route configuration>/<virtual host name>" (Trellis names a
// virtual host by its first host entry).
func VirtualHostName(routeConfig, vhost string) string {
	return routeConfig + "/" + vhost
}

// VHDSResources splits a route configuration into its VHDS form and its
// virtual hosts, marshalled.
func VHDSResources(rc *routev3.RouteConfiguration) (route *Resource, vhosts []*Resource, err error) {
	slim := proto.Clone(rc).(*routev3.RouteConfiguration)
	slim.VirtualHosts = nil
	slim.Vhds = &routev3.Vhds{ConfigSource: &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}}
	if route, err = NewResource(rc.GetName(), slim); err != nil {
		return nil, nil, err
	}
	seen := make(map[string]bool, len(rc.GetVirtualHosts()))
	for _, vh := range rc.GetVirtualHosts() {
		name := VirtualHostName(rc.GetName(), vh.GetName())
		if seen[name] {
			return nil, nil, fmt.Errorf("route configuration %q: two virtual hosts named %q", rc.GetName(), vh.GetName())
		}
		seen[name] = true
		r, err := NewResource(name, vh)
		if err != nil {
			return nil, nil, err
		}
		vhosts = append(vhosts, r)
	}
	return route, vhosts, nil
}

// vhdsView returns what a VHDS stream is sent of snap: the VHDS forms as
// the route configurations. Snapshots without them are returned as they are.
func vhdsView(snap *Snapshot) *Snapshot {
	forms, ok := snap.Resources[VHDSRoutes]
	if !ok {
		return snap
	}
	out := &Snapshot{Version: snap.Version, Resources: make(map[string][]*Resource, len(snap.Resources))}
	for t, l := range snap.Resources {
		out.Resources[t] = l
	}
	out.Resources[resourcev3.RouteType] = forms
	return out
}

// namespaced reports whether a type's subscriptions match by namespace.
func namespaced(typeURL string) bool { return typeURL == resourcev3.VirtualHostType }

// isNamespace reports whether a subscribed name is a namespace (the name
// of one of the stream's route configurations, for virtual hosts): an
// empty namespace is not answered with a removal, a missing
// "<route configuration>/<host>" is.
func (c *conn) isNamespace(typeURL, name string) bool {
	return namespaced(typeURL) && find(c.snap.Resources[resourcev3.RouteType], name) != nil
}

// namespaceOf returns the namespace part of a virtual host's name.
func namespaceOf(name string) (string, bool) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", false
	}
	return name[:i], true
}

// uniqueSorted sorts rs by name and drops repeats.
func uniqueSorted(rs []*Resource) []*Resource {
	SortResources(rs)
	out := rs[:0]
	for _, r := range rs {
		if len(out) == 0 || r.Name != out[len(out)-1].Name {
			out = append(out, r)
		}
	}
	return out
}
