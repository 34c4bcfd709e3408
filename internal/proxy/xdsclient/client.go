package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Types lists the type URLs in Envoy's subscription order.
var Types = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.VirtualHostType, resourcev3.SecretType}

func wildcard(typeURL string) bool {
	return typeURL == resourcev3.ClusterType || typeURL == resourcev3.ListenerType
}

// Handler receives configuration. Apply gets the complete current set of
// one type (name → resource) every time it changes and returns an error to
// reject it. The map is the handler's to keep; it must not be changed.
// Apply is called from one goroutine at a time.
type Handler interface {
	Apply(typeURL string, resources map[string]*anypb.Any) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(typeURL string, resources map[string]*anypb.Any) error

// Apply calls f.
func (f HandlerFunc) Apply(typeURL string, resources map[string]*anypb.Any) error {
	return f(typeURL, resources)
}

// Backoff bounds reconnection delays: the n-th consecutive failure waits a
// random duration in [d/2, d) with d = min(Max, Initial·2ⁿ).
type Backoff struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 30s
}

// Options configure a Client.
type Options struct {
	// Address is the ADS server's gRPC target ("127.0.0.1:15010").
	Address string
	// Node identifies the proxy; sent in the first request of each stream.
	Node *corev3.Node
	// SotW selects State-of-the-World ADS; the zero value uses Delta ADS.
	SotW bool
	// Handler receives configuration. Required.
	Handler Handler
	// Backoff bounds reconnection delays; zero fields take the defaults.
	Backoff Backoff
	// DialOptions replace the default (plaintext) gRPC dial options.
	DialOptions []grpc.DialOption
	// MaxMessageSize bounds one response from the server; zero is
	// unlimited, as in Envoy (gRPC's own default of 4 MiB is too small for
	// a large mesh's route tables). A larger response ends the stream with
	// RESOURCE_EXHAUSTED and the config in force keeps serving.
	MaxMessageSize int
	// Rand returns a float in [0,1) for jitter; nil uses math/rand/v2.
	Rand func() float64
	// Logf receives connection events and NACK reasons; nil discards.
	Logf func(format string, args ...any)
	// Now is the clock for last-updated times; nil uses time.Now.
	Now func() time.Time
	// InitialFetchTimeout bounds how long listeners wait for the first
	// endpoints of the clusters (Envoy's warming); default 5s.
	InitialFetchTimeout time.Duration
	// Stats, when set, gets Envoy's xDS counters:
	// control_plane.connected_state, cluster_manager.cds.update_*,
	// listener_manager.lds.update_*, and xds.eds/rds.update_*.
	Stats *stats.Store
}

// typeStats are the update counters of one resource type.
type typeStats struct {
	attempt, success, rejected *stats.Counter
}

func newTypeStats(st *stats.Store, kind, name string) typeStats {
	sc := st.Scope(kind, name)
	return typeStats{sc.Counter("update_attempt"), sc.Counter("update_success"), sc.Counter("update_rejected")}
}

// Resource is one accepted resource with its version.
type Resource struct {
	Name        string
	Version     string
	Resource    *anypb.Any
	LastUpdated time.Time
}

// TypeStatus is a resource type's state, for the admin page.
type TypeStatus struct {
	TypeURL string
	// Version is the last accepted version (system_version_info in Delta).
	Version string
	// Nonce is the nonce of the last response handled (ACKed or NACKed).
	Nonce string
	// LastError is the reason of the last NACK, empty after an ACK.
	LastError string
	// LastUpdated is when the last update was accepted.
	LastUpdated time.Time
	// Subscribed are the names asked for; nil for wildcard types.
	Subscribed []string
	// Acked counts accepted responses, Nacked rejected ones.
	Acked, Nacked uint64
}

type typeState struct {
	url        string
	stats      typeStats
	started    bool // a request was sent on the current stream
	subscribed map[string]bool
	resources  map[string]*Resource
	version    string
	nonce      string
	lastErr    string
	updated    time.Time
	acked      uint64
	nacked     uint64
	// rejectedVersion and nackDelay pace repeated NACKs of one version.
	rejectedVersion string
	nackDelay       time.Duration
}

// Client is one ADS client. Create it with New and start it with Run.
type Client struct {
	opts Options

	mu        sync.Mutex
	types     map[string]*typeState
	connected bool
	// warmDeadline is when listeners stop waiting for endpoints;
	// firstDeadline when they stop waiting for the first clusters.
	warmDeadline  time.Time
	firstDeadline time.Time
	synced        chan struct{}
	syncOnce      sync.Once
	// connectedState is 1 while a stream is up (Envoy's control_plane.connected_state).
	connectedState *stats.Gauge
	changed        chan struct{} // subscription change, wakes the stream loop
	// vhdsAnswered are the route configurations on VHDS whose virtual
	// hosts have been answered since they were subscribed (vhds.go).
	vhdsAnswered map[string]bool
}

// New validates opts and returns a client.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("xdsclient: Address must be set (the ADS server's host:port)")
	}
	if opts.Handler == nil {
		return nil, errors.New("xdsclient: Handler must be set")
	}
	if opts.Node == nil || opts.Node.GetId() == "" {
		return nil, errors.New("xdsclient: Node.Id must be set")
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff.Initial = 500 * time.Millisecond
	}
	if opts.Backoff.Max <= 0 {
		opts.Backoff.Max = 30 * time.Second
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InitialFetchTimeout <= 0 {
		opts.InitialFetchTimeout = 5 * time.Second
	}
	if opts.DialOptions == nil {
		opts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	maxMsg := opts.MaxMessageSize
	if maxMsg <= 0 {
		maxMsg = math.MaxInt32
	}
	opts.DialOptions = append(opts.DialOptions[:len(opts.DialOptions):len(opts.DialOptions)], grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)))
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	c := &Client{opts: opts, types: map[string]*typeState{}, synced: make(chan struct{}), changed: make(chan struct{}, 1), vhdsAnswered: map[string]bool{},
		connectedState: opts.Stats.Scope("control_plane", "").Gauge("connected_state")}
	scopes := map[string][2]string{
		resourcev3.ClusterType: {"cluster_manager", "cds"}, resourcev3.ListenerType: {"listener_manager", "lds"},
		resourcev3.EndpointType: {"xds", "eds"}, resourcev3.RouteType: {"xds", "rds"}, resourcev3.SecretType: {"xds", "sds"},
		resourcev3.VirtualHostType: {"xds", "vhds"},
	}
	for _, t := range Types {
		sc := scopes[t]
		c.types[t] = &typeState{url: t, subscribed: map[string]bool{}, resources: map[string]*Resource{},
			stats: newTypeStats(opts.Stats, sc[0]+"."+sc[1], "")}
	}
	return c, nil
}

// Synced is closed once clusters and listeners have been accepted at least
// once (the proxy's "first config applied").
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Connected reports whether a stream is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Status returns every type's state in subscription order.
func (c *Client) Status() []TypeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]TypeStatus, 0, len(Types))
	for _, t := range Types {
		s := c.types[t]
		if t == resourcev3.VirtualHostType && len(s.subscribed) == 0 && s.acked+s.nacked == 0 {
			continue // VHDS is listed once a route configuration uses it
		}
		ts := TypeStatus{TypeURL: t, Version: s.version, Nonce: s.nonce, LastError: s.lastErr,
			LastUpdated: s.updated, Acked: s.acked, Nacked: s.nacked}
		if !wildcard(t) {
			ts.Subscribed = sortedKeys(s.subscribed)
		}
		out = append(out, ts)
	}
	return out
}

// Resources returns the accepted resources of one type, sorted by name.
func (c *Client) Resources(typeURL string) []Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.types[typeURL]
	if s == nil {
		return nil
	}
	out := make([]Resource, 0, len(s.resources))
	for _, r := range s.resources {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Run connects and keeps the stream up until ctx ends; it returns ctx's
// error. Config accepted before a disconnect stays in force.
func (c *Client) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.opts.Address, c.opts.DialOptions...)
	if err != nil {
		return fmt.Errorf("xdsclient: dial %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	c.mu.Lock()
	if c.firstDeadline.IsZero() {
		c.firstDeadline = c.opts.Now().Add(c.opts.InitialFetchTimeout)
		t := time.AfterFunc(c.opts.InitialFetchTimeout, c.wake)
		defer t.Stop()
	}
	c.mu.Unlock()
	failures := 0
	for {
		progressed, err := c.stream(ctx, ads)
		c.setConnected(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			failures = 0
		}
		d := c.backoff(failures)
		failures++
		c.opts.Logf("xds stream to %s ended: %v; reconnecting in %v", c.opts.Address, err, d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) backoff(n int) time.Duration {
	d := c.opts.Backoff.Initial
	for i := 0; i < n && d < c.opts.Backoff.Max; i++ {
		d *= 2
	}
	d = min(d, c.opts.Backoff.Max)
	return d/2 + time.Duration(c.opts.Rand()*float64(d/2))
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	if !v {
		c.connectedState.Set(0)
	}
	for _, s := range c.types {
		s.started = false
	}
	c.mu.Unlock()
}

// stream runs one ADS stream; progressed reports whether any response came.
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.opts.SotW {
		st, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return false, err
		}
		return c.runSotW(ctx, st)
	}
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	return c.runDelta(ctx, st)
}

// wake signals the stream loop that subscriptions changed.
func (c *Client) wake() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// apply hands a candidate set to the handler and, on success, commits it
// and updates dependent subscriptions. Called without c.mu held.
func (c *Client) apply(typeURL string, next map[string]*Resource, version, nonce string) error {
	handlerType := typeURL
	var set map[string]*anypb.Any
	var vhdsOn map[string]bool
	var err error
	switch typeURL {
	case resourcev3.RouteType, resourcev3.VirtualHostType:
		// Route configurations on VHDS reach the handler joined with
		// their virtual hosts (vhds.go).
		handlerType = resourcev3.RouteType
		c.mu.Lock()
		routes, vhosts := c.types[resourcev3.RouteType].resources, c.types[resourcev3.VirtualHostType].resources
		if typeURL == resourcev3.RouteType {
			routes = next
			if vhdsOn, err = vhdsRoutes(next); err == nil && len(vhdsOn) > 0 && c.opts.SotW {
				err = fmt.Errorf("route configuration %s: vhds needs Delta ADS (this proxy uses State of the World)", strings.Join(sortedKeys(vhdsOn), ", "))
			}
		} else {
			if err = c.checkVirtualHosts(next); err == nil {
				for _, n := range answeredNamespaces(vhosts, next, c.types[resourcev3.VirtualHostType].subscribed) {
					c.vhdsAnswered[n] = true
				}
			}
			vhosts = next
		}
		if err == nil {
			set, err = c.routeSet(routes, vhosts)
		}
		c.mu.Unlock()
	default:
		set = make(map[string]*anypb.Any, len(next))
		for n, r := range next {
			set[n] = r.Resource
		}
	}
	if err == nil {
		err = c.opts.Handler.Apply(handlerType, set)
	}
	c.mu.Lock()
	s := c.types[typeURL]
	s.nonce = nonce
	s.stats.attempt.Inc()
	if err != nil {
		s.stats.rejected.Inc()
		s.lastErr = err.Error()
		s.nacked++
		c.mu.Unlock()
		c.opts.Logf("xds: NACK %s version %q: %v", typeURL, version, err)
		return err
	}
	s.resources = next
	s.version = version
	s.lastErr = ""
	s.updated = c.opts.Now()
	s.acked++
	s.stats.success.Inc()
	changed := false
	switch typeURL {
	case resourcev3.ClusterType:
		changed = c.resubscribe(resourcev3.EndpointType, edsNames(next))
		if !c.types[resourcev3.ListenerType].started {
			changed = true
			if c.warmDeadline.IsZero() {
				c.warmDeadline = c.opts.Now().Add(c.opts.InitialFetchTimeout)
				time.AfterFunc(c.opts.InitialFetchTimeout, c.wake)
			}
		}
	case resourcev3.EndpointType:
		changed = !c.types[resourcev3.ListenerType].started
	case resourcev3.ListenerType:
		changed = c.resubscribe(resourcev3.RouteType, rdsNames(next))
	case resourcev3.RouteType:
		changed = c.resubscribe(resourcev3.VirtualHostType, vhdsOn)
	}
	if typeURL == resourcev3.ClusterType || typeURL == resourcev3.ListenerType {
		// Secrets named by TLS transport sockets of clusters and listeners.
		if c.resubscribe(resourcev3.SecretType, sdsNames(c.types[resourcev3.ClusterType].resources, c.types[resourcev3.ListenerType].resources)) {
			changed = true
		}
	}
	cds, lds := c.types[resourcev3.ClusterType], c.types[resourcev3.ListenerType]
	if cds.acked > 0 && lds.acked > 0 {
		c.syncOnce.Do(func() { close(c.synced) })
	}
	c.mu.Unlock()
	if changed {
		c.wake()
	}
	return nil
}

// reject records a response refused before it reached the handler.
func (c *Client) reject(typeURL, nonce string, err error) {
	c.mu.Lock()
	s := c.types[typeURL]
	s.nonce = nonce
	s.lastErr = err.Error()
	s.nacked++
	s.stats.attempt.Inc()
	s.stats.rejected.Inc()
	c.mu.Unlock()
	c.opts.Logf("xds: NACK %s: %v", typeURL, err)
}

// resubscribe sets a non-wildcard type's names and drops resources no
// longer wanted. Reports whether the subscription changed. c.mu held.
func (c *Client) resubscribe(typeURL string, names map[string]bool) bool {
	s := c.types[typeURL]
	if equalSets(s.subscribed, names) {
		return false
	}
	s.subscribed = names
	for n := range s.resources {
		if names[n] {
			continue
		}
		if typeURL == resourcev3.VirtualHostType {
			// namespace subscriptions: "80" keeps "80/<host>"
			if ns, ok := vhdsNamespace(n); ok && names[ns] {
				continue
			}
		}
		delete(s.resources, n)
	}
	if typeURL == resourcev3.VirtualHostType {
		for n := range c.vhdsAnswered {
			if !names[n] {
				delete(c.vhdsAnswered, n)
			}
		}
	}
	return true
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// edsNames are the EDS service names of a CDS set's EDS clusters.
func edsNames(clusters map[string]*Resource) map[string]bool {
	out := map[string]bool{}
	for _, r := range clusters {
		var c clusterv3.Cluster
		if r.Resource.UnmarshalTo(&c) != nil || c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		n := c.GetEdsClusterConfig().GetServiceName()
		if n == "" {
			n = c.GetName()
		}
		out[n] = true
	}
	return out
}

// ResourceName returns the name of a decoded xDS resource of a known type.
func ResourceName(a *anypb.Any) (string, error) {
	switch a.GetTypeUrl() {
	case resourcev3.ClusterType:
		var m clusterv3.Cluster
		if err := a.UnmarshalTo(&m); err != nil {
			return "", err
		}
		return m.GetName(), nil
	case resourcev3.EndpointType:
		var m endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&m); err != nil {
			return "", err
		}
		return m.GetClusterName(), nil
	case resourcev3.ListenerType:
		var m listenerv3.Listener
		if err := a.UnmarshalTo(&m); err != nil {
			return "", err
		}
		return m.GetName(), nil
	case resourcev3.RouteType:
		var m routev3.RouteConfiguration
		if err := a.UnmarshalTo(&m); err != nil {
			return "", err
		}
		return m.GetName(), nil
	case resourcev3.SecretType:
		var m tlsv3.Secret
		if err := a.UnmarshalTo(&m); err != nil {
			return "", err
		}
		return m.GetName(), nil
	}
	return "", fmt.Errorf("unsupported resource type %q", a.GetTypeUrl())
}
