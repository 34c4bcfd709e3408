package trace

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Kind is a collector protocol.
type Kind uint8

const (
	OTLPGRPC Kind = iota + 1
	OTLPHTTP
	Zipkin
)

func (k Kind) String() string {
	switch k {
	case OTLPGRPC:
		return "opentelemetry"
	case OTLPHTTP:
		return "opentelemetry"
	case Zipkin:
		return "zipkin"
	}
	return "unknown"
}

// Target is where a provider's spans go: a cluster of the proxy, reached
// through the cluster's own connections (its TLS origination included).
type Target struct {
	Kind    Kind
	Cluster string
	// Authority is the Host/:authority sent to the collector (empty: the
	// cluster name's host).
	Authority string
	// Path is the HTTP path (OTLP/HTTP, Zipkin).
	Path string
	// ServiceName is the resource's service.name (OTLP) and the span's
	// localEndpoint.serviceName (Zipkin).
	ServiceName string
	// Timeout bounds one export (zero: 5 s).
	Timeout time.Duration
}

func (t *Target) setURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Path == "" {
		return fmt.Errorf("%q has no path; use e.g. http://collector:4318/v1/traces", s)
	}
	t.Path = u.Path
	if t.Authority == "" {
		t.Authority = u.Host
	}
	return nil
}

// Dialer connects to one host of a cluster (the proxy's cluster manager).
type Dialer func(ctx context.Context, cluster string) (net.Conn, error)

// Exporter sends one batch of spans.
type Exporter interface {
	Export(ctx context.Context, spans []*Span) error
	Close()
}

// Registry creates and shares one Reporter per distinct Target, for the
// proxy's lifetime.
type Registry struct {
	Dial  Dialer
	Stats *stats.Store
	// QueueSize bounds each Reporter's queue (zero: 4096 spans);
	// BatchSize the spans per export (zero: 512); FlushInterval the
	// longest a span waits for its batch (zero: 1 s).
	QueueSize, BatchSize int
	FlushInterval        time.Duration
	Logf                 func(format string, args ...any)

	mu   sync.Mutex
	reps map[Target]*Reporter
}

// Reporter returns the Reporter for t, starting it on first use.
func (g *Registry) Reporter(t Target) *Reporter {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.reps[t]; ok {
		return r
	}
	if g.reps == nil {
		g.reps = map[Target]*Reporter{}
	}
	var exp Exporter
	switch t.Kind {
	case OTLPGRPC:
		exp = newOTLPGRPC(t, g.Dial)
	case OTLPHTTP:
		exp = newHTTPExporter(t, g.Dial, encodeOTLP, "application/x-protobuf")
	default:
		exp = newHTTPExporter(t, g.Dial, encodeZipkin, "application/json")
	}
	r := NewReporter(exp, g.QueueSize, g.BatchSize, g.FlushInterval)
	if g.Stats != nil {
		sc := g.Stats.Scope("tracing", t.Kind.String())
		r.sent, r.dropped, r.failed = sc.Counter("spans_sent"), sc.Counter("spans_dropped"), sc.Counter("reports_failed")
	}
	r.logf, r.tgt = g.Logf, t
	g.reps[t] = r
	return r
}

// Close stops every Reporter after a last flush.
func (g *Registry) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.reps {
		r.Close()
	}
	g.reps = nil
}

// Reporter batches spans off the request path: Report only enqueues (or
// drops when the queue is full); one goroutine exports.
type Reporter struct {
	q                     chan *Span
	exp                   Exporter
	batch                 int
	flush                 time.Duration
	sent, dropped, failed *stats.Counter
	logf                  func(string, ...any)
	stop                  chan struct{}
	done                  chan struct{}
	closeOnce             sync.Once
	failures              atomic.Uint64
	tgt                   Target
}

// NewReporter starts a Reporter over exp (sizes as in Registry).
func NewReporter(exp Exporter, queue, batch int, flush time.Duration) *Reporter {
	if queue <= 0 {
		queue = 4096
	}
	if batch <= 0 {
		batch = 512
	}
	if flush <= 0 {
		flush = time.Second
	}
	r := &Reporter{q: make(chan *Span, queue), exp: exp, batch: batch, flush: flush,
		sent: &stats.Counter{}, dropped: &stats.Counter{}, failed: &stats.Counter{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// Report enqueues a finished span; it never blocks.
func (r *Reporter) Report(s *Span) {
	select {
	case r.q <- s:
	default:
		r.dropped.Inc()
	}
}

// Dropped is the number of spans lost to a full queue or a failed export.
func (r *Reporter) Dropped() uint64 { return r.dropped.Value() }

// Sent is the number of spans the collector accepted.
func (r *Reporter) Sent() uint64 { return r.sent.Value() }

func (r *Reporter) run() {
	defer close(r.done)
	t := time.NewTicker(r.flush)
	defer t.Stop()
	buf := make([]*Span, 0, r.batch)
	for {
		select {
		case s := <-r.q:
			buf = append(buf, s)
			if len(buf) >= r.batch {
				buf = r.export(buf)
			}
		case <-t.C:
			if len(buf) > 0 {
				buf = r.export(buf)
			}
		case <-r.stop:
			for {
				select {
				case s := <-r.q:
					buf = append(buf, s)
					if len(buf) >= r.batch {
						buf = r.export(buf)
					}
					continue
				default:
				}
				break
			}
			if len(buf) > 0 {
				r.export(buf)
			}
			return
		}
	}
}

func (r *Reporter) export(buf []*Span) []*Span {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := r.exp.Export(ctx, buf)
	cancel()
	if err != nil {
		r.failed.Inc()
		r.dropped.Add(uint64(len(buf)))
		if n := r.failures.Add(1); r.logf != nil && (n == 1 || n%100 == 0) {
			r.logf("tracing: export of %d spans failed (%d failures so far): %v", len(buf), n, err)
		}
	} else {
		r.sent.Add(uint64(len(buf)))
	}
	clear(buf)
	return buf[:0]
}

// Close flushes what is queued and stops the exporter.
func (r *Reporter) Close() {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
		r.exp.Close()
	})
}

// target is the Target the Reporter exports to (tests).
func (r *Reporter) target() Target { return r.tgt }
