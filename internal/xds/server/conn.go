package server

import (
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// conn is one ADS stream. Fields below the line are owned by the stream's
// goroutine; the mutexes guard what other goroutines read.
type conn struct {
	s         *Server
	id        int64
	delta     bool
	connected time.Time
	wake      chan struct{} // one slot: pushes coalesce

	pmu     sync.Mutex
	pending time.Time // earliest change not yet processed; zero if none

	smu    sync.Mutex
	nodeSt *corev3.Node
	types  map[string]*TypeStatus

	// owned by the stream goroutine
	node    *corev3.Node
	snap    *Snapshot
	watches map[string]*watch
}

// enqueue records a change and wakes the stream goroutine without blocking.
func (c *conn) enqueue(changed time.Time) {
	c.pmu.Lock()
	if c.pending.IsZero() || changed.Before(c.pending) {
		c.pending = changed
	}
	c.pmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// takePending returns and clears the earliest unprocessed change time.
func (c *conn) takePending() time.Time {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	t := c.pending
	c.pending = time.Time{}
	return t
}

func (c *conn) setNode(n *corev3.Node) {
	c.node = n
	c.smu.Lock()
	c.nodeSt = n
	c.smu.Unlock()
}

func (c *conn) getNode() *corev3.Node {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.nodeSt
}

func (c *conn) proxyID() string {
	if n := c.getNode(); n != nil {
		return n.GetId()
	}
	return "(no node yet)"
}

// sentInfo remembers what a response carried until it is ACKed or NACKed.
type sentInfo struct {
	nonce   string
	version string
	changed time.Time
}

// maxInflight bounds the responses remembered per type awaiting ACK.
const maxInflight = 8

// watch is one type's subscription on a stream.
type watch struct {
	typeURL  string
	wildcard bool
	// names are the explicit subscriptions, shared with other streams
	// through the server's setTable.
	names    *nameSet
	inflight []sentInfo
	// lastNonce is the nonce of the latest response of this type.
	lastNonce string
}

func newWatch(typeURL string) *watch {
	return &watch{typeURL: typeURL}
}

// wildcardByDefault reports whether an empty first subscription means
// "everything" for the type (listeners and clusters, as in Envoy).
func wildcardByDefault(typeURL string) bool {
	return typeURL == resourcev3.ListenerType || typeURL == resourcev3.ClusterType
}

// update applies Delta subscribe and unsubscribe lists and returns the
// names (or "*") newly subscribed.
func (w *watch) update(t *setTable, subscribe, unsubscribe []string) (added []string) {
	var set map[string]struct{}
	edit := func() map[string]struct{} {
		if set == nil {
			set = make(map[string]struct{}, w.names.len()+len(subscribe))
			if w.names != nil {
				for n := range w.names.setOrNil() {
					set[n] = struct{}{}
				}
			}
		}
		return set
	}
	for _, n := range subscribe {
		if n == "*" {
			if !w.wildcard {
				w.wildcard = true
				added = append(added, n)
			}
			continue
		}
		if set != nil {
			if _, ok := set[n]; ok {
				continue
			}
		} else if w.names.has(n) {
			continue
		}
		edit()[n] = struct{}{}
		added = append(added, n)
	}
	for _, n := range unsubscribe {
		if n == "*" {
			w.wildcard = false
			continue
		}
		if w.names.has(n) || set != nil {
			delete(edit(), n)
		}
	}
	if set != nil {
		old := w.names
		w.names = t.intern(set)
		t.release(old)
	}
	return added
}

func (w *watch) wants(name string) bool {
	if w.wildcard || w.names.has(name) {
		return true
	}
	if namespaced(w.typeURL) {
		ns, ok := namespaceOf(name)
		return ok && w.names.has(ns)
	}
	return false
}

// matching returns the resources of a sorted list a subscription to name
// takes: the one named so or, for namespaced types, the namespace's too.
func (w *watch) matching(list []*Resource, name string) []*Resource {
	var out []*Resource
	if r := find(list, name); r != nil {
		out = append(out, r)
	}
	if namespaced(w.typeURL) {
		for _, r := range list {
			if ns, ok := namespaceOf(r.Name); ok && ns == name {
				out = append(out, r)
			}
		}
	}
	return out
}

// setNames replaces the explicit subscription (state of the world); it
// reports whether anything changed.
func (w *watch) setNames(t *setTable, names []string) bool {
	wild := false
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		if n == "*" {
			wild = true
			continue
		}
		set[n] = struct{}{}
	}
	if len(names) == 0 && wildcardByDefault(w.typeURL) {
		wild = true
	}
	var cur map[string]struct{}
	if w.names != nil {
		cur = w.names.setOrNil()
	}
	if wild == w.wildcard && equalSets(set, cur) {
		return false
	}
	w.wildcard = wild
	old := w.names
	w.names = t.intern(set)
	t.release(old)
	return true
}

// selected returns the resources of list the watch wants, in name order.
func (w *watch) selected(list []*Resource) []*Resource {
	if w.wildcard {
		return list
	}
	out := make([]*Resource, 0, w.names.len())
	if w.names.len()*4 >= len(list) || namespaced(w.typeURL) {
		for _, r := range list {
			if w.wants(r.Name) {
				out = append(out, r)
			}
		}
		return out
	}
	for n := range w.names.setOrNil() {
		if r := find(list, n); r != nil {
			out = append(out, r)
		}
	}
	SortResources(out)
	return out
}

// sameList reports whether two lists are the same shared slice.
func sameList(a, b []*Resource) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// diff returns the resources of next the watch wants that differ from prev,
// and the names the watch wants that were in prev and are gone from next.
func (w *watch) diff(prev, next []*Resource) (changed []*Resource, removed []string) {
	if sameList(prev, next) {
		return nil, nil
	}
	if !w.wildcard && w.names.len()*4 < len(next) && !namespaced(w.typeURL) {
		for n := range w.names.setOrNil() {
			o, r := find(prev, n), find(next, n)
			switch {
			case r != nil && (o == nil || o.Version != r.Version):
				changed = append(changed, r)
			case r == nil && o != nil:
				removed = append(removed, n)
			}
		}
		SortResources(changed)
		return changed, removed
	}
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || (i < len(prev) && prev[i].Name < next[j].Name):
			if w.wants(prev[i].Name) {
				removed = append(removed, prev[i].Name)
			}
			i++
		case i == len(prev) || next[j].Name < prev[i].Name:
			if w.wants(next[j].Name) {
				changed = append(changed, next[j])
			}
			j++
		default:
			if prev[i].Version != next[j].Version && w.wants(next[j].Name) {
				changed = append(changed, next[j])
			}
			i++
			j++
		}
	}
	return changed, removed
}

// sent records a response in flight and in the status.
func (c *conn) sent(w *watch, info sentInfo, resources int) {
	w.inflight = append(w.inflight, info)
	w.lastNonce = info.nonce
	if len(w.inflight) > maxInflight {
		w.inflight = w.inflight[len(w.inflight)-maxInflight:]
	}
	c.smu.Lock()
	st := c.typeStatus(w.typeURL)
	st.SentVersion = info.version
	st.SentNonce = info.nonce
	st.LastSent = time.Now()
	st.Resources = resources
	c.smu.Unlock()
	c.s.metrics.pushed(w.typeURL)
}

// takeInflight removes and returns the response with the nonce, dropping
// older ones (a client answers in order).
func (w *watch) takeInflight(nonce string) (sentInfo, bool) {
	for i, in := range w.inflight {
		if in.nonce == nonce {
			w.inflight = w.inflight[i+1:]
			return in, true
		}
	}
	return sentInfo{}, false
}

// acked records an ACK of a response.
func (c *conn) acked(w *watch, in sentInfo) {
	now := time.Now()
	c.smu.Lock()
	st := c.typeStatus(w.typeURL)
	st.AckedVersion = in.version
	st.AckedNonce = in.nonce
	st.LastAcked = now
	c.smu.Unlock()
	if !in.changed.IsZero() {
		c.s.metrics.converged(now.Sub(in.changed))
	}
	if c.s.onAck != nil {
		c.s.onAck(Ack{ProxyID: c.node.GetId(), TypeURL: w.typeURL, Version: in.version, Changed: in.changed, At: now})
	}
}

// nacked records and logs a NACK.
func (c *conn) nacked(w *watch, nonce, version, msg string) {
	c.smu.Lock()
	st := c.typeStatus(w.typeURL)
	if version == "" { // Delta NACKs carry no version: the client keeps what it ACKed
		version = st.AckedVersion
	}
	c.s.logf("xds: NACK from %s for %s (nonce %s, keeping version %q): %s",
		c.node.GetId(), ShortType(w.typeURL), nonce, version, msg)
	st.LastNack = &Nack{Time: time.Now(), Nonce: nonce, Version: version, Message: msg}
	c.smu.Unlock()
	c.s.metrics.nacked(w.typeURL)
}

// typeStatus returns the status entry for a type; smu must be held.
func (c *conn) typeStatus(typeURL string) *TypeStatus {
	if c.types == nil {
		c.types = map[string]*TypeStatus{}
	}
	st := c.types[typeURL]
	if st == nil {
		st = &TypeStatus{TypeURL: typeURL, Type: ShortType(typeURL)}
		c.types[typeURL] = st
	}
	return st
}
