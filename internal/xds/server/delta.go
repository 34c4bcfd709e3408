package server

import (
	"sort"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// delta drives one incremental stream: responses carry only the resources
// that changed and the names that went away.
type delta struct {
	c      *conn
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
}

func (d *delta) handle(r *discoveryv3.DeltaDiscoveryRequest) error {
	c := d.c
	if c.node == nil {
		if r.GetNode().GetId() == "" {
			return nodeRequired(c)
		}
		c.setNode(r.GetNode())
		snap, err := c.generate(true)
		if err != nil {
			return err
		}
		c.snap = snap
		c.takePending()
	}
	t := r.GetTypeUrl()
	if t == "" {
		return status.Error(codes.InvalidArgument, "type_url is required on an aggregated stream")
	}
	w := c.watches[t]
	if w != nil && r.GetResponseNonce() != "" {
		in, ok := w.takeInflight(r.GetResponseNonce())
		switch {
		case !ok:
		case r.GetErrorDetail() != nil:
			c.nacked(w, r.GetResponseNonce(), "", r.GetErrorDetail().GetMessage())
		default:
			c.acked(w, in)
		}
	}
	if w == nil {
		w = newWatch(t)
		c.watches[t] = w
		if len(r.GetResourceNamesSubscribe()) == 0 && wildcardByDefault(t) {
			w.wildcard = true
		}
		w.update(&c.s.sets, r.GetResourceNamesSubscribe(), r.GetResourceNamesUnsubscribe())
		return d.sendInitial(w, r.GetInitialResourceVersions())
	}
	if added := w.update(&c.s.sets, r.GetResourceNamesSubscribe(), r.GetResourceNamesUnsubscribe()); len(added) > 0 {
		return d.sendNames(w, added)
	}
	return nil
}

// sendInitial answers the first request for a type, skipping what the
// client says it already has (initial_resource_versions after a reconnect).
func (d *delta) sendInitial(w *watch, have map[string]string) error {
	list := d.c.snap.Resources[w.typeURL]
	var changed []*Resource
	for _, r := range w.selected(list) {
		if v, ok := have[r.Name]; !ok || v != r.Version {
			changed = append(changed, r)
		}
	}
	var removed []string
	for n := range have {
		if find(list, n) == nil && w.wants(n) {
			removed = append(removed, n)
		}
	}
	for n := range w.names.setOrNil() {
		if _, ok := have[n]; !ok && len(w.matching(list, n)) == 0 && !d.c.isNamespace(w.typeURL, n) {
			removed = append(removed, n) // tells the client it does not exist
		}
	}
	return d.send(w, changed, removed, time.Time{})
}

// sendNames answers new subscriptions: the resource, or its removal when it
// does not exist.
func (d *delta) sendNames(w *watch, names []string) error {
	list := d.c.snap.Resources[w.typeURL]
	var changed []*Resource
	var removed []string
	for _, n := range names {
		if n == "*" {
			changed = append(changed[:0], list...)
			break
		}
		if rs := w.matching(list, n); len(rs) > 0 {
			changed = append(changed, rs...)
		} else if !d.c.isNamespace(w.typeURL, n) {
			removed = append(removed, n)
		}
	}
	if namespaced(w.typeURL) {
		// a namespace and one of its virtual hosts may both be named
		changed = uniqueSorted(changed)
	}
	return d.send(w, changed, removed, time.Time{})
}

func (d *delta) push() error {
	c := d.c
	changed := c.takePending()
	if c.node == nil {
		return nil
	}
	start := time.Now()
	snap, err := c.generate(false)
	if err != nil || snap == nil || snap.Version == c.snap.Version {
		return err
	}
	prev := c.snap
	c.snap = snap
	c.subscribeNewEndpoints(prev, snap)
	type removal struct {
		w  *watch
		rm []string
	}
	var later []removal // see order.go
	for _, t := range c.typesInOrder() {
		w := c.watches[t]
		ch, rm := w.diff(prev.Resources[t], snap.Resources[t])
		if len(rm) > 0 && deferRemoval(t) {
			later = append(later, removal{w, rm})
			rm = nil
		}
		if len(ch) == 0 && len(rm) == 0 {
			continue
		}
		if err := d.send(w, ch, rm, changed); err != nil {
			return err
		}
	}
	for _, r := range later {
		if err := d.send(r.w, nil, r.rm, changed); err != nil {
			return err
		}
	}
	c.s.metrics.pushTime(time.Since(start))
	return nil
}

func (d *delta) send(w *watch, changed []*Resource, removed []string, at time.Time) error {
	c := d.c
	version := c.snap.Version
	sort.Strings(removed)
	nonce := contentNonce(w.typeURL, version, changed, removed)
	// The cache key names the message kind too: a State-of-the-World
	// response with the same content has the same nonce.
	err := c.s.shared.send(d.stream, version, "delta "+nonce, func() proto.Message {
		rs := make([]*discoveryv3.Resource, len(changed))
		for i, r := range changed {
			rs[i] = &discoveryv3.Resource{Name: r.Name, Version: r.Version, Resource: r.Any}
		}
		return &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: version,
			Resources:         rs,
			RemovedResources:  removed,
			TypeUrl:           w.typeURL,
			Nonce:             nonce,
		}
	})
	if err != nil {
		return err
	}
	c.sent(w, sentInfo{nonce: nonce, version: version, changed: at}, len(changed))
	return nil
}
