package trace

import (
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

// Tag is one span attribute.
type Tag struct{ Key, Value string }

// Span is one finished span, owned by the Reporter once reported.
type Span struct {
	TraceID   [16]byte
	SpanID    [8]byte
	ParentID  [8]byte
	HasParent bool
	Name      string
	// Client marks an outbound (egress) span; otherwise it is a server
	// (ingress) span.
	Client     bool
	Start, End time.Time
	// Error marks a failed request (a 5xx, or a gRPC error).
	Error bool
	Tags  []Tag
}

// Tag appends an attribute.
func (s *Span) Tag(k, v string) { s.Tags = append(s.Tags, Tag{k, v}) }

// State is one request's tracing state, kept in the connection manager's
// per-request struct (no allocation while unsampled).
type State struct {
	TraceID   [16]byte
	SpanID    [8]byte
	ParentID  [8]byte
	HasParent bool
	Sampled   bool
	// Active: tracing is configured for the request's connection manager.
	Active bool
	bufs   headerBufs
}

// Start reads the caller's context from h, decides sampling and writes the
// proxy's span context back into h for the upstream.
func (c *Config) Start(s *State, h *http1.Headers, rand func() uint64) {
	p := Extract(*h)
	s.Active, s.HasParent = true, false
	a := rand()
	if p.Valid {
		s.TraceID, s.ParentID, s.HasParent = p.TraceID, p.SpanID, true
	} else {
		b := rand()
		for i := 0; i < 8; i++ {
			s.TraceID[i] = byte(a >> (8 * i))
			s.TraceID[8+i] = byte(b >> (8 * i))
		}
	}
	sid := rand() | 1 // never all zero
	for i := 0; i < 8; i++ {
		s.SpanID[i] = byte(sid >> (8 * i))
	}
	if p.Decided {
		s.Sampled = p.Sampled
	} else {
		s.Sampled = c.sample(a)
	}
	s.inject(h)
}

// sample decides with a random value at the configured percentage.
func (c *Config) sample(r uint64) bool {
	if c.threshold == 0 {
		return false
	}
	if c.threshold >= sampleScale {
		return true
	}
	return r%sampleScale < c.threshold
}

// sampleScale: percentages are kept to 1/10000 of a percent (Envoy's
// FractionalPercent MILLION).
const sampleScale = 1_000_000

// Reports says whether a finished request's span goes to the Reporter.
func (c *Config) Reports(s *State) bool {
	return s.Active && s.Sampled && c.Reporter != nil
}

// Finish completes sp (name, kind, times and request tags already set by
// the caller) with the ids, the configured tags and the custom tags read
// from the request headers h, and reports it.
func (c *Config) Finish(s *State, sp *Span, h http1.Headers) {
	sp.TraceID, sp.SpanID, sp.ParentID, sp.HasParent = s.TraceID, s.SpanID, s.ParentID, s.HasParent
	sp.Client = c.Client
	sp.Tags = append(sp.Tags, c.static...)
	for _, t := range c.custom {
		if t.Header == "" {
			sp.Tag(t.Name, t.Value)
			continue
		}
		if v, ok := h.Get(t.Header); ok {
			sp.Tag(t.Name, string(v))
		} else if t.Value != "" {
			sp.Tag(t.Name, t.Value)
		}
	}
	c.Reporter.Report(sp)
}
