package server

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A push follows the xDS protocol's make-before-break order, so that no
// listener or route ever names a cluster the proxy lacks or a cluster
// without its endpoints:
//
//   - the endpoints of clusters new in the push are sent with the push,
//     right after the clusters, as though the proxy had already subscribed
//     to them (it does so while applying those clusters, before it reads the
//     next response), so a route moved onto a new cluster finds it warm;
//   - clusters and endpoints gone from the push are removed last, after
//     the listeners and routes that stopped naming them.

// deferRemoval reports whether a type's removals wait until the end of a
// push.
func deferRemoval(typeURL string) bool {
	return typeURL == resourcev3.ClusterType || typeURL == resourcev3.EndpointType
}

// subscribeNewEndpoints adds to the EDS subscription the load assignments
// that are new in snap (those of new clusters). Called before the push's
// diffs.
func (c *conn) subscribeNewEndpoints(prev, snap *Snapshot) {
	w := c.watches[resourcev3.EndpointType]
	if w == nil || w.wildcard {
		return
	}
	var old []*Resource
	if prev != nil {
		old = prev.Resources[resourcev3.EndpointType]
	}
	var added []string
	for _, r := range snap.Resources[resourcev3.EndpointType] {
		if !w.names.has(r.Name) && find(old, r.Name) == nil {
			added = append(added, r.Name)
		}
	}
	if len(added) > 0 {
		w.update(&c.s.sets, added, nil)
	}
}

// withRemoved returns next plus the resources of prev named in removed, in
// name order: a state-of-the-world response that adds without removing yet.
func withRemoved(next, prev []*Resource, removed []string) []*Resource {
	out := append([]*Resource(nil), next...)
	for _, n := range removed {
		if r := find(prev, n); r != nil {
			out = append(out, r)
		}
	}
	SortResources(out)
	return out
}
