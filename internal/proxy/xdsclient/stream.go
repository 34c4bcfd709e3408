package xdsclient

import (
	"context"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

const hcmName = "envoy.filters.network.http_connection_manager"

// rdsNames are the route configuration names the listeners' HTTP
// connection managers fetch over RDS.
func rdsNames(listeners map[string]*Resource) map[string]bool {
	out := map[string]bool{}
	for _, r := range listeners {
		var l listenerv3.Listener
		if r.Resource.UnmarshalTo(&l) != nil {
			continue
		}
		chains := l.GetFilterChains()
		if d := l.GetDefaultFilterChain(); d != nil {
			chains = append(chains, d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				if tc == nil {
					continue
				}
				var h hcmv3.HttpConnectionManager
				if tc.UnmarshalTo(&h) != nil {
					continue
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" {
					out[n] = true
				}
			}
		}
	}
	return out
}

// sdsNames are the SDS secrets the TLS transport sockets of clusters
// (UpstreamTlsContext) and listener filter chains (DownstreamTlsContext) name.
func sdsNames(clusters, listeners map[string]*Resource) map[string]bool {
	out := map[string]bool{}
	addCommon := func(ctc *tlsv3.CommonTlsContext) {
		for _, s := range ctc.GetTlsCertificateSdsSecretConfigs() {
			if s.GetName() != "" {
				out[s.GetName()] = true
			}
		}
		if n := ctc.GetValidationContextSdsSecretConfig().GetName(); n != "" {
			out[n] = true
		}
		if n := ctc.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(); n != "" {
			out[n] = true
		}
	}
	socket := func(ts *corev3.TransportSocket) {
		tc := ts.GetTypedConfig()
		if tc == nil {
			return
		}
		var up tlsv3.UpstreamTlsContext
		var down tlsv3.DownstreamTlsContext
		switch {
		case tc.MessageIs(&up) && tc.UnmarshalTo(&up) == nil:
			addCommon(up.GetCommonTlsContext())
		case tc.MessageIs(&down) && tc.UnmarshalTo(&down) == nil:
			addCommon(down.GetCommonTlsContext())
		}
	}
	for _, r := range clusters {
		var c clusterv3.Cluster
		if r.Resource.UnmarshalTo(&c) == nil {
			socket(c.GetTransportSocket())
		}
	}
	for _, r := range listeners {
		var l listenerv3.Listener
		if r.Resource.UnmarshalTo(&l) != nil {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			socket(fc.GetTransportSocket())
		}
		if d := l.GetDefaultFilterChain(); d != nil {
			socket(d.GetTransportSocket())
		}
	}
	return out
}

// active reports whether a type should have a request out: clusters
// always; endpoints and routes when something names them; listeners once
// clusters have been answered and their endpoints have arrived or the
// initial fetch timeout passed (Envoy's warming order). c.mu held.
func (c *Client) active(t string) bool {
	switch t {
	case resourcev3.ClusterType:
		return true
	case resourcev3.ListenerType:
		if c.types[resourcev3.ListenerType].acked > 0 {
			return true // already warm once: reconnects resubscribe at once
		}
		cds, eds := c.types[resourcev3.ClusterType], c.types[resourcev3.EndpointType]
		if cds.acked+cds.nacked == 0 {
			// A server that never answers clusters must not keep listeners
			// away forever (Envoy's initial_fetch_timeout).
			return !c.firstDeadline.IsZero() && !c.opts.Now().Before(c.firstDeadline)
		}
		return len(eds.subscribed) == 0 || eds.acked+eds.nacked > 0 || !c.opts.Now().Before(c.warmDeadline)
	}
	return len(c.types[t].subscribed) > 0 || c.types[t].started
}

func (c *Client) node(first *bool) *discoveryv3.DeltaDiscoveryRequest {
	r := &discoveryv3.DeltaDiscoveryRequest{}
	if *first {
		r.Node = c.opts.Node
		*first = false
	}
	return r
}

type receiver[T any] struct {
	ch  chan T
	err chan error
}

func startRecv[T any](ctx context.Context, recv func() (T, error)) receiver[T] {
	r := receiver[T]{ch: make(chan T), err: make(chan error, 1)}
	go func() {
		for {
			m, err := recv()
			if err != nil {
				r.err <- err
				return
			}
			select {
			case r.ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return r
}

func nackStatus(err error) *statuspb.Status {
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// runDelta drives one Delta ADS stream.
func (c *Client) runDelta(ctx context.Context, st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) (bool, error) {
	c.markConnected()
	first := true
	sent := map[string]map[string]bool{} // names subscribed on this stream, per type
	// sendSubscriptions sends the initial request of every type that
	// should be active and the diff of changed subscriptions.
	sendSubscriptions := func() error {
		for _, t := range Types {
			c.mu.Lock()
			s := c.types[t]
			if !c.active(t) {
				c.mu.Unlock()
				continue
			}
			var req *discoveryv3.DeltaDiscoveryRequest
			if !s.started {
				req = c.node(&first)
				req.TypeUrl = t
				if !wildcard(t) {
					req.ResourceNamesSubscribe = sortedKeys(s.subscribed)
				}
				if len(s.resources) > 0 {
					req.InitialResourceVersions = map[string]string{}
					for n, r := range s.resources {
						req.InitialResourceVersions[n] = r.Version
					}
				}
				s.started = true
				sent[t] = copySet(s.subscribed)
			} else if !wildcard(t) && !equalSets(sent[t], s.subscribed) {
				req = c.node(&first)
				req.TypeUrl = t
				for n := range s.subscribed {
					if !sent[t][n] {
						req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
					}
				}
				for n := range sent[t] {
					if !s.subscribed[n] {
						req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
					}
				}
				sent[t] = copySet(s.subscribed)
			}
			c.mu.Unlock()
			if req != nil {
				if err := st.Send(req); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return pump(ctx, c, st.Recv, sendSubscriptions, func(resp *discoveryv3.DeltaDiscoveryResponse) error {
		t := resp.GetTypeUrl()
		c.mu.Lock()
		s := c.types[t]
		var next map[string]*Resource
		if s != nil {
			next = make(map[string]*Resource, len(s.resources)+len(resp.GetResources()))
			for n, r := range s.resources {
				next[n] = r
			}
		}
		c.mu.Unlock()
		var err error
		if s != nil {
			now := c.opts.Now()
			for i, r := range resp.GetResources() {
				if r.GetResource() == nil {
					delete(next, r.GetName())
					continue
				}
				if r.GetResource().GetTypeUrl() != t {
					err = fmt.Errorf("resources[%d] (%q): type %q in a %q response", i, r.GetName(), r.GetResource().GetTypeUrl(), t)
					break
				}
				name := r.GetName()
				if name == "" {
					if name, err = ResourceName(r.GetResource()); err != nil {
						err = fmt.Errorf("resources[%d]: %w", i, err)
						break
					}
				}
				next[name] = &Resource{Name: name, Version: r.GetVersion(), Resource: r.GetResource(), LastUpdated: now}
			}
			for _, n := range resp.GetRemovedResources() {
				delete(next, n)
			}
		}
		ok, err := c.settle(ctx, s, t, next, resp.GetSystemVersionInfo(), resp.GetNonce(), err)
		if !ok {
			return ctx.Err()
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		if first {
			ack.Node = c.opts.Node
			first = false
		}
		if err != nil {
			ack.ErrorDetail = nackStatus(err)
		}
		if err := st.Send(ack); err != nil {
			return err
		}
		return sendSubscriptions()
	})
}

func (c *Client) markConnected() {
	c.mu.Lock()
	c.connected = true
	c.connectedState.Set(1)
	c.mu.Unlock()
}

func copySet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// runSotW drives one State-of-the-World ADS stream.
func (c *Client) runSotW(ctx context.Context, st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) (bool, error) {
	c.markConnected()
	first := true
	sent := map[string]map[string]bool{}
	request := func(t string, s *typeState) *discoveryv3.DiscoveryRequest {
		r := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: s.version, ResponseNonce: s.nonce}
		if !wildcard(t) {
			r.ResourceNames = sortedKeys(s.subscribed)
		}
		if first {
			r.Node = c.opts.Node
			first = false
		}
		return r
	}
	sendSubscriptions := func() error {
		for _, t := range Types {
			c.mu.Lock()
			s := c.types[t]
			var req *discoveryv3.DiscoveryRequest
			if c.active(t) && (!s.started || (!wildcard(t) && !equalSets(sent[t], s.subscribed))) {
				if !s.started {
					s.nonce = "" // nonces are per stream
				}
				req = request(t, s)
				s.started = true
				sent[t] = copySet(s.subscribed)
			}
			c.mu.Unlock()
			if req != nil {
				if err := st.Send(req); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return pump(ctx, c, st.Recv, sendSubscriptions, func(resp *discoveryv3.DiscoveryResponse) error {
		t := resp.GetTypeUrl()
		c.mu.Lock()
		s := c.types[t]
		next := map[string]*Resource{}
		if s != nil && !wildcard(t) {
			// EDS/RDS responses may carry only some names: keep the rest.
			for n, r := range s.resources {
				if s.subscribed[n] {
					next[n] = r
				}
			}
		}
		c.mu.Unlock()
		var err error
		if s != nil {
			now := c.opts.Now()
			for i, a := range resp.GetResources() {
				if a.GetTypeUrl() != t {
					err = fmt.Errorf("resources[%d]: type %q in a %q response", i, a.GetTypeUrl(), t)
					break
				}
				name, nerr := ResourceName(a)
				if nerr != nil {
					err = fmt.Errorf("resources[%d]: %w", i, nerr)
					break
				}
				if _, dup := next[name]; dup && wildcard(t) {
					err = fmt.Errorf("resources[%d]: duplicate name %q", i, name)
					break
				}
				next[name] = &Resource{Name: name, Version: resp.GetVersionInfo(), Resource: a, LastUpdated: now}
			}
		}
		ok, err := c.settle(ctx, s, t, next, resp.GetVersionInfo(), resp.GetNonce(), err)
		if !ok {
			return ctx.Err()
		}
		c.mu.Lock()
		var ack *discoveryv3.DiscoveryRequest
		if s != nil {
			ack = request(t, s)
			sent[t] = copySet(s.subscribed)
		} else {
			ack = &discoveryv3.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		}
		c.mu.Unlock()
		if err != nil {
			ack.ErrorDetail = nackStatus(err)
		}
		if err := st.Send(ack); err != nil {
			return err
		}
		return sendSubscriptions()
	})
}

// pump runs one stream of either flavour: subscriptions go out at the
// start and whenever they change, and every response is handed to handle
// (which applies, ACKs or NACKs it). It reports whether any response
// arrived, so the caller can reset its back-off.
func pump[R any](ctx context.Context, c *Client, recv func() (R, error), subscribe func() error, handle func(R) error) (bool, error) {
	if err := subscribe(); err != nil {
		return false, err
	}
	rx := startRecv(ctx, recv)
	progressed := false
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case err := <-rx.err:
			return progressed, err
		case <-c.changed:
			if err := subscribe(); err != nil {
				return progressed, err
			}
		case resp := <-rx.ch:
			progressed = true
			if err := handle(resp); err != nil {
				return progressed, err
			}
		}
	}
}

// settle applies next as the new state of t, or records err as the
// rejection of this response, then paces a repeated NACK. It returns false
// when ctx ended while pacing, and the error to put in the NACK (nil
// means ACK).
func (c *Client) settle(ctx context.Context, s *typeState, t string, next map[string]*Resource, version, nonce string, err error) (ok bool, nack error) {
	switch {
	case s == nil:
		err = fmt.Errorf("unsupported type %q", t)
	case err == nil:
		err = c.apply(t, next, version, nonce)
	default:
		c.reject(t, nonce, err)
	}
	if err == nil {
		c.nackReset(t)
		return true, nil
	}
	return c.nackPause(ctx, t, version), err
}

// nackPause slows down a server that answers a NACK by sending the same
// rejected version again (go-control-plane's simple cache does): the first
// NACK of a version goes out at once, repeats wait 100ms, doubling to 5s.
// It returns false when ctx ends.
func (c *Client) nackPause(ctx context.Context, typeURL, version string) bool {
	c.mu.Lock()
	s := c.types[typeURL]
	var d time.Duration
	if s != nil {
		if s.rejectedVersion == version && version != "" {
			s.nackDelay = min(max(2*s.nackDelay, 100*time.Millisecond), 5*time.Second)
			d = s.nackDelay
		} else {
			s.rejectedVersion, s.nackDelay = version, 0
		}
	}
	c.mu.Unlock()
	if d == 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Client) nackReset(typeURL string) {
	c.mu.Lock()
	if s := c.types[typeURL]; s != nil {
		s.rejectedVersion, s.nackDelay = "", 0
	}
	c.mu.Unlock()
}
