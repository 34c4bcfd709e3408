package httpconn

import (
	"bytes"
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

// begin runs as a request enters the connection manager (first in
// prepare): it counts the request and, for gRPC over HTTP/2, starts
// counting its messages both ways.
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
