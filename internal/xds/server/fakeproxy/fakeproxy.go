// Package fakeproxy is a minimal Envoy-like Delta ADS client for tests and
// the control-plane scale benchmark: it subscribes to all clusters and
// listeners, follows them to the endpoints and route configurations they
// name (as Envoy does), ACKs every response and records what it holds.
//
// It sits beside internal/xds/server in the flow; the real data-plane client
// is internal/proxy/xdsclient.
package fakeproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3" // DecodeFull of endpoints
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3" // DecodeFull of routes
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/xds/server"
)

// Options tune a client.
type Options struct {
	// Decode is how much of each response is decoded; the zero value
	// decodes everything (DecodeFull).
	Decode DecodeMode
	// KeepResources keeps each resource's bytes (Resource); when false only
	// names and versions are kept, which is what a benchmark of thousands of
	// clients can afford.
	KeepResources bool
	// OnResponse, when set, is called after each response is applied and
	// ACKed, with its type and system version.
	OnResponse func(typeURL, version string, at time.Time)
	// Reject, when set, is asked about every response before it is applied;
	// a non-nil error NACKs it with that message (the held resources stay
	// as they were), as a proxy does with config it cannot use.
	Reject func(resp *discoveryv3.DeltaDiscoveryResponse) error
	// VHDS asks for virtual host discovery (node metadata
	// server.VHDSMetadataKey): the route configurations then come without
	// their virtual hosts, and the client subscribes to each one's virtual
	// hosts by its name (Envoy's VHDS namespace subscription) when it
	// arrives. The client trusts the server to send VHDS forms rather than
	// reading vhds from each configuration (DecodeEnvelope does not read
	// route bodies).
	VHDS bool
}

// Client is one simulated proxy.
type Client struct {
	opts   Options
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc

	mu       sync.Mutex
	cond     *sync.Cond
	versions map[string]map[string]string     // type -> name -> version
	res      map[string]map[string]*anypb.Any // type -> name -> resource (KeepResources)
	sysVer   map[string]string                // type -> system version of the last response
	subs     map[string]map[string]bool       // EDS/RDS names subscribed
	err      error
	done     chan struct{}
}

// Dial opens a Delta ADS stream on cc as node and subscribes to clusters
// and listeners. The client runs until ctx ends or Close.
func Dial(ctx context.Context, cc *grpc.ClientConn, node *corev3.Node, opts Options) (*Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	var callOpts []grpc.CallOption
	if opts.Decode == DecodeEnvelope {
		callOpts = append(callOpts, grpc.ForceCodecV2(envelopeCodec{keepAll: opts.KeepResources}))
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx, callOpts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open delta ADS stream: %w", err)
	}
	c := &Client{opts: opts, stream: st, cancel: cancel,
		versions: map[string]map[string]string{}, res: map[string]map[string]*anypb.Any{},
		sysVer: map[string]string{}, subs: map[string]map[string]bool{resourcev3.EndpointType: {}, resourcev3.RouteType: {}},
		done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	if opts.VHDS {
		c.subs[resourcev3.VirtualHostType] = map[string]bool{}
		node = proto.Clone(node).(*corev3.Node)
		if node.Metadata == nil {
			node.Metadata = &structpb.Struct{}
		}
		if node.Metadata.Fields == nil {
			node.Metadata.Fields = map[string]*structpb.Value{}
		}
		node.Metadata.Fields[server.VHDSMetadataKey] = structpb.NewStringValue("true")
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe clusters: %w", err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe listeners: %w", err)
	}
	go c.run()
	return c, nil
}

// Close ends the stream.
func (c *Client) Close() {
	c.cancel()
	<-c.done
}

func (c *Client) run() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by server")
			}
			c.mu.Lock()
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		if err := c.apply(resp); err != nil {
			c.mu.Lock()
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
	}
}

// apply records a response, ACKs it and subscribes to what it references.
func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	if c.opts.Reject != nil {
		if err := c.opts.Reject(resp); err != nil {
			return c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(),
				ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}})
		}
	}
	var refs []string
	if c.opts.VHDS && t == resourcev3.RouteType {
		for _, r := range resp.GetResources() {
			refs = append(refs, r.GetName())
		}
	}
	c.mu.Lock()
	vs := c.versions[t]
	if vs == nil {
		vs = map[string]string{}
		c.versions[t] = vs
	}
	if c.opts.KeepResources && c.res[t] == nil {
		c.res[t] = map[string]*anypb.Any{}
	}
	for _, r := range resp.GetResources() {
		vs[r.GetName()] = r.GetVersion()
		if c.opts.KeepResources {
			c.res[t][r.GetName()] = r.GetResource()
		}
	}
	for _, n := range resp.GetRemovedResources() {
		delete(vs, n)
		delete(c.res[t], n)
	}
	c.mu.Unlock()

	for _, r := range resp.GetResources() {
		a := r.GetResource()
		if a == nil || (c.opts.Decode == DecodeEnvelope && !needsBody(t)) {
			continue // DecodeEnvelope: the body was not read
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s %s: %w", t, r.GetName(), err)
		}
		switch m := m.(type) {
		case *clusterv3.Cluster:
			if m.GetType() == clusterv3.Cluster_EDS {
				n := m.GetEdsClusterConfig().GetServiceName()
				if n == "" {
					n = m.GetName()
				}
				refs = append(refs, n)
			}
		case *listenerv3.Listener:
			refs = append(refs, routeNames(m)...)
		}
	}
	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
	if err := c.stream.Send(ack); err != nil {
		return err
	}
	if len(refs) > 0 {
		sub := resourcev3.EndpointType
		switch t {
		case resourcev3.ListenerType:
			sub = resourcev3.RouteType
		case resourcev3.RouteType:
			sub = resourcev3.VirtualHostType
		}
		var add []string
		c.mu.Lock()
		for _, n := range refs {
			if !c.subs[sub][n] {
				c.subs[sub][n] = true
				add = append(add, n)
			}
		}
		c.mu.Unlock()
		if len(add) > 0 {
			if err := c.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: sub, ResourceNamesSubscribe: add}); err != nil {
				return err
			}
		}
	}
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(t, resp.GetSystemVersionInfo(), time.Now())
	}
	c.mu.Lock()
	// The version changes last, so a Wait for it sees the response ACKed
	// and OnResponse called.
	c.sysVer[t] = resp.GetSystemVersionInfo()
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

// routeNames lists the RDS route configurations a listener's connection
// managers name.
func routeNames(l *listenerv3.Listener) []string {
	var out []string
	hcm := func(a *anypb.Any) {
		var h hcmv3.HttpConnectionManager
		if a.MessageIs(&h) && a.UnmarshalTo(&h) == nil {
			if n := h.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	if a := l.GetApiListener().GetApiListener(); a != nil {
		hcm(a)
	}
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if a := f.GetTypedConfig(); a != nil {
				hcm(a)
			}
		}
	}
	return out
}

// Names returns the names held for a type and their versions (a copy).
func (c *Client) Names(typeURL string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.versions[typeURL]))
	for n, v := range c.versions[typeURL] {
		out[n] = v
	}
	return out
}

// Resource returns a held resource (KeepResources), or nil.
func (c *Client) Resource(typeURL, name string) *anypb.Any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.res[typeURL][name]
}

// Version is the system version of the last response of a type, set once
// the response is ACKed.
func (c *Client) Version(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sysVer[typeURL]
}

// Wait blocks until cond (called with the client's lock held, so it must
// only read through the *Held accessor) holds, the stream fails, or ctx ends.
func (c *Client) Wait(ctx context.Context, cond func(h Held) bool) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if cond(Held{c}) {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.cond.Wait()
	}
}

// Held reads the client's state inside Wait.
type Held struct{ c *Client }

// Has reports whether a resource is held.
func (h Held) Has(typeURL, name string) bool {
	_, ok := h.c.versions[typeURL][name]
	return ok
}

// Count is how many resources of a type are held.
func (h Held) Count(typeURL string) int { return len(h.c.versions[typeURL]) }

// Version is the system version of the last response of a type, set once
// the response is ACKed.
func (h Held) Version(typeURL string) string { return h.c.sysVer[typeURL] }

// Resource returns a held resource (KeepResources), or nil.
func (h Held) Resource(typeURL, name string) *anypb.Any { return h.c.res[typeURL][name] }
