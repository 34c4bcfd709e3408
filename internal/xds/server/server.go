package server

import (
	"context"
	"errors"
	"io"
	"log"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Generator turns a connected node into the resources it should have.
// It is called from many connection goroutines at once and must be safe for
// concurrent use. Two calls that return the same Snapshot.Version for the
// same node must return the same resources.
type Generator interface {
	Generate(node *corev3.Node) (*Snapshot, error)
}

// GeneratorFunc adapts a function to Generator.
type GeneratorFunc func(node *corev3.Node) (*Snapshot, error)

// Generate calls f.
func (f GeneratorFunc) Generate(node *corev3.Node) (*Snapshot, error) { return f(node) }

// Options configure a Server.
type Options struct {
	// Generator builds each node's resources. Required.
	Generator Generator
	// Logf receives NACKs, generation errors and stream ends; nil means
	// log.Printf.
	Logf func(format string, args ...any)
	// Registerer receives the server's Prometheus metrics; nil means no
	// metrics.
	Registerer prometheus.Registerer
	// OnAck, when set, is called from the connection's goroutine after each
	// ACK. It must not block.
	OnAck func(Ack)
}

// Ack describes one ACK, for tests and benchmarks.
type Ack struct {
	ProxyID string
	TypeURL string
	Version string
	// Changed is the time of the earliest config change the ACKed response
	// carried, zero when the response was not caused by a push (a first
	// request or a subscription change).
	Changed time.Time
	At      time.Time
}

// Push announces that the input of the Generator changed.
type Push struct {
	// Changed is when the first change folded into this push happened; it
	// starts the convergence clock. Zero means now.
	Changed time.Time
}

// Server is an ADS server. Create it with New and register it on a
// grpc.Server with Register.
type Server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	gen     Generator
	logf    func(format string, args ...any)
	onAck   func(Ack)
	metrics *metrics
	shared  preparedCache
	sets    setTable

	mu     sync.Mutex
	conns  map[*conn]struct{}
	nextID atomic.Int64
}

// New returns a server. It panics if o.Generator is nil.
func New(o Options) *Server {
	if o.Generator == nil {
		panic("server.New: nil Generator")
	}
	s := &Server{gen: o.Generator, logf: o.Logf, onAck: o.OnAck, conns: map[*conn]struct{}{}}
	if s.logf == nil {
		s.logf = log.Printf
	}
	s.metrics = newMetrics(o.Registerer)
	return s
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
}

// Push wakes every connection to regenerate and send what changed. It never
// blocks: each connection has a one-slot queue, and a push that finds the
// slot full is folded into the one waiting.
func (s *Server) Push(p Push) {
	if p.Changed.IsZero() {
		p.Changed = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.enqueue(p.Changed)
	}
}

// Connected is the number of open ADS streams.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Status returns every connected proxy's sync state, sorted by proxy id.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(conns))
	for _, c := range conns {
		if st, ok := c.status(); ok {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}

// Node returns the node of a connected proxy, or nil.
func (s *Server) Node(proxyID string) *corev3.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if n := c.getNode(); n != nil && n.GetId() == proxyID {
			return n
		}
	}
	return nil
}

// StreamAggregatedResources serves a state-of-the-world ADS stream.
func (s *Server) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	c := s.open(false)
	defer s.close(c)
	sw := &sotw{c: c, stream: stream}
	return serveStream(stream.Context(), s, c, stream.Recv, sw.handle, sw.push)
}

// DeltaAggregatedResources serves an incremental ADS stream.
func (s *Server) DeltaAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	c := s.open(true)
	defer s.close(c)
	d := &delta{c: c, stream: stream}
	return serveStream(stream.Context(), s, c, stream.Recv, d.handle, d.push)
}

// serveStream runs one ADS stream of either flavour: a goroutine receives
// requests, and this one handles them and pushes whenever the connection
// is woken, so a push never waits behind a blocked Recv.
func serveStream[R any](ctx context.Context, s *Server, c *conn, recv func() (R, error), handle func(R) error, push func() error) error {
	reqs := make(chan R, 8)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				close(reqs)
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return // the handler is gone; don't leak this goroutine
			}
		}
	}()
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				return s.streamEnd(c, <-errc)
			}
			if err := handle(r); err != nil {
				return err
			}
		case <-c.wake:
			if err := push(); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (s *Server) streamEnd(c *conn, err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		return nil
	}
	s.logf("xds: stream %d (%s) ended: %v", c.id, c.proxyID(), err)
	return err
}

func (s *Server) open(delta bool) *conn {
	c := &conn{s: s, id: s.nextID.Add(1), delta: delta, connected: time.Now(),
		wake: make(chan struct{}, 1), watches: map[string]*watch{}}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	n := len(s.conns)
	s.mu.Unlock()
	s.metrics.connected(n)
	return c
}

func (s *Server) close(c *conn) {
	for _, w := range c.watches {
		s.sets.release(w.names)
		w.names = nil
	}
	s.mu.Lock()
	delete(s.conns, c)
	n := len(s.conns)
	s.mu.Unlock()
	s.metrics.connected(n)
}

// generate runs the generator for c's node, turning a failure into a gRPC
// error on the first request (a malformed node is the client's fault) and a
// logged, ignored push otherwise (the last good config keeps serving).
func (c *conn) generate(first bool) (*Snapshot, error) {
	snap, err := c.s.gen.Generate(c.node)
	if err == nil && snap == nil {
		err = errors.New("generator returned no snapshot")
	}
	if err != nil {
		if first {
			return nil, status.Errorf(codes.InvalidArgument, "node %q: %v", c.node.GetId(), err)
		}
		c.s.logf("xds: generate for %s: %v (keeping last config)", c.node.GetId(), err)
		return nil, nil
	}
	if c.delta && WantsVHDS(c.node) {
		snap = vhdsView(snap)
	}
	return snap, nil
}

// typesInOrder lists the watched types in push order.
func (c *conn) typesInOrder() []string {
	out := make([]string, 0, len(c.watches))
	for _, t := range pushOrder {
		if c.watches[t] != nil {
			out = append(out, t)
		}
	}
	var extra []string
	for t := range c.watches {
		if ShortType(t) == t {
			extra = append(extra, t)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

func nodeRequired(c *conn) error {
	if c.node == nil {
		return status.Error(codes.InvalidArgument, "the first request on a stream must carry node (with node.id)")
	}
	return nil
}
