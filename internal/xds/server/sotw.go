package server

import (
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// sotw drives one state-of-the-world stream: every response carries all the
// resources of its type that the client subscribed to.
type sotw struct {
	c      *conn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
}

func (s *sotw) handle(r *discoveryv3.DiscoveryRequest) error {
	c := s.c
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
	if w == nil {
		w = newWatch(t)
		c.watches[t] = w
		w.setNames(&c.s.sets, r.GetResourceNames())
		return s.send(w, time.Time{})
	}
	if nonce := r.GetResponseNonce(); nonce != "" {
		latest := nonce == w.lastNonce
		in, ok := w.takeInflight(nonce)
		if r.GetErrorDetail() != nil {
			if ok {
				c.nacked(w, nonce, r.GetVersionInfo(), r.GetErrorDetail().GetMessage())
			}
			return nil
		}
		if ok {
			c.acked(w, in)
		}
		if !latest {
			return nil // stale: a newer response is on its way
		}
		if w.setNames(&c.s.sets, r.GetResourceNames()) {
			return s.send(w, time.Time{})
		}
		return nil
	}
	// A request without a nonce on a known type asks for everything again.
	w.setNames(&c.s.sets, r.GetResourceNames())
	return s.send(w, time.Time{})
}

func (s *sotw) push() error {
	c := s.c
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
	var later []*watch // see order.go
	for _, t := range c.typesInOrder() {
		w := c.watches[t]
		ch, rm := w.diff(prev.Resources[t], snap.Resources[t])
		if len(ch) == 0 && len(rm) == 0 {
			continue
		}
		if len(rm) > 0 && deferRemoval(t) {
			later = append(later, w)
			if len(ch) == 0 {
				continue
			}
			// Add now, remove at the end.
			rs := withRemoved(w.selected(snap.Resources[t]), w.selected(prev.Resources[t]), rm)
			if err := s.sendList(w, rs, changed); err != nil {
				return err
			}
			continue
		}
		if err := s.send(w, changed); err != nil {
			return err
		}
	}
	for _, w := range later {
		if err := s.send(w, changed); err != nil {
			return err
		}
	}
	c.s.metrics.pushTime(time.Since(start))
	return nil
}

func (s *sotw) send(w *watch, changed time.Time) error {
	return s.sendList(w, w.selected(s.c.snap.Resources[w.typeURL]), changed)
}

// sendList sends rs as the whole of w's type.
func (s *sotw) sendList(w *watch, rs []*Resource, changed time.Time) error {
	c := s.c
	version := c.snap.Version
	nonce := contentNonce(w.typeURL, version, rs, nil)
	err := c.s.shared.send(s.stream, version, nonce, func() proto.Message {
		anys := make([]*anypb.Any, len(rs))
		for i, r := range rs {
			anys[i] = r.Any
		}
		return &discoveryv3.DiscoveryResponse{VersionInfo: version, Resources: anys, TypeUrl: w.typeURL, Nonce: nonce}
	})
	if err != nil {
		return err
	}
	c.sent(w, sentInfo{nonce: nonce, version: version, changed: changed}, len(rs))
	return nil
}
