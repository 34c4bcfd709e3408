package httpconn

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// The connection manager's Envoy stats (http.STAT_PREFIX.*, Config.Stats)
// and the gRPC message counts of Istio's grpc_stats filter are kept here;
// the connection and exchange code calls these hooks at fixed points.

// connOpened counts a downstream connection in downstream_cx_*.
func connOpened(s *stats.HTTPStats, h2 bool) {
	if s == nil {
		return
	}
	s.DownstreamCxTotal.Inc()
	s.DownstreamCxActive.Inc()
	if h2 {
		s.DownstreamCxHTTP2Total.Inc()
	} else {
		s.DownstreamCxHTTP1Total.Inc()
	}
}

// connClosed counts the end of a connection connOpened counted.
func connClosed(s *stats.HTTPStats) {
	if s == nil {
		return
	}
	s.DownstreamCxActive.Dec()
	s.DownstreamCxDestroy.Inc()
}

// begin runs as a request enters the router: it counts the request and,
// for gRPC over HTTP/2, starts counting its messages both ways.
func (e *exchange) begin() {
	if s := e.cfg.Stats; s != nil {
		s.Request(e.h2)
	}
	e.msgs = nil
	if !e.h2 {
		return // gRPC needs HTTP/2 downstream; keep HTTP/1.1 untouched
	}
	if v, ok := e.q.Headers.Get("content-type"); !ok || !bytes.HasPrefix(v, grpcContentType) {
		return
	}
	// One allocation per gRPC stream: the HTTP/2 transport may still read
	// the request body after the exchange went back to its pool, so the
	// counter must not live in the exchange.
	m := &grpcMessages{}
	m.out.sink = e.sink
	e.sink = &m.out
	if e.body != nil {
		m.in.r = e.body
		e.body = &m.in
	}
	e.msgs = m
}

// end runs once the request is finished, before the record is observed.
func (e *exchange) end() {
	if m := e.msgs; m != nil {
		e.rec.RequestMessages = m.in.frames.count()
		e.rec.ResponseMessages = m.out.frames.count()
		e.sink = m.out.sink
		e.msgs = nil
	}
	s := e.cfg.Stats
	if s == nil {
		return
	}
	s.Response(e.rec.Status, float64(e.rec.Duration)/float64(time.Millisecond))
	if e.rec.Flags&FlagNR != 0 {
		s.NoRoute.Inc()
	}
	if e.rec.Flags&FlagNC != 0 {
		s.NoCluster.Inc()
	}
}

// grpcMessages counts one gRPC stream's messages: requests as the body is
// read from downstream, responses as they are written downstream.
type grpcMessages struct {
	in  grpcBody
	out grpcSink
}

// grpcBody counts the messages of a request body as it is read.
type grpcBody struct {
	r interface {
		Read(p []byte) (int, error)
	}
	frames grpcFrames
}

func (b *grpcBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.frames.feed(p[:n])
	return n, err
}

// grpcSink counts the messages of a response body on its way downstream.
type grpcSink struct {
	sink
	frames grpcFrames
}

func (s *grpcSink) Write(p []byte) (int, error) {
	n, err := s.sink.Write(p)
	s.frames.feed(p[:n])
	return n, err
}

// grpcFrames counts gRPC length-prefixed messages (a flag byte and a
// 4-byte big-endian length, then the message) in a stream of bytes fed in
// pieces of any size. A message counts once all of it went by. feed calls
// must not run concurrently; count may run alongside them.
type grpcFrames struct {
	head  [5]byte
	headN int    // prefix bytes seen of the next message
	left  uint32 // bytes of the current message still to come
	inMsg bool
	n     atomic.Uint64
}

func (f *grpcFrames) feed(p []byte) {
	for len(p) > 0 {
		if f.inMsg {
			k := uint32(len(p))
			if k > f.left {
				k = f.left
			}
			f.left -= k
			p = p[k:]
			if f.left == 0 {
				f.inMsg = false
				f.n.Add(1)
			}
			continue
		}
		k := copy(f.head[f.headN:], p)
		f.headN += k
		p = p[k:]
		if f.headN < len(f.head) {
			return
		}
		f.headN = 0
		f.left = binary.BigEndian.Uint32(f.head[1:])
		if f.left == 0 {
			f.n.Add(1)
		} else {
			f.inMsg = true
		}
	}
}

// count returns the messages seen completely so far.
func (f *grpcFrames) count() uint64 { return f.n.Load() }
