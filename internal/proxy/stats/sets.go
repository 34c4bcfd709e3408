package stats

import (
	"strconv"
	"strings"
)

// ListenerStats are Envoy's per-listener counters (listener.ADDR.*), where
// ADDR is the listener address with '_' before the port
// ("listener.0.0.0.0_15001.downstream_cx_total"). Bind once per listener.
type ListenerStats struct {
	DownstreamCxTotal    *Counter
	DownstreamCxActive   *Gauge
	DownstreamCxDestroy  *Counter
	NoFilterChainMatch   *Counter
	DownstreamCxLengthMs *Histogram
}

// ListenerStatName returns Envoy's stat name for a listener address, where
// every ':' becomes '_' as in all Envoy stat names:
// "0.0.0.0:15001" -> "0.0.0.0_15001", "[::]:80" -> "[__]_80".
func ListenerStatName(addr string) string {
	return strings.ReplaceAll(addr, ":", "_")
}

// NewListenerStats binds the counters of the listener at addr ("ip:port").
func NewListenerStats(s *Store, addr string) *ListenerStats {
	sc := s.Scope("listener", ListenerStatName(addr))
	return &ListenerStats{
		DownstreamCxTotal:    sc.Counter("downstream_cx_total"),
		DownstreamCxActive:   sc.Gauge("downstream_cx_active"),
		DownstreamCxDestroy:  sc.Counter("downstream_cx_destroy"),
		NoFilterChainMatch:   sc.Counter("no_filter_chain_match"),
		DownstreamCxLengthMs: sc.Histogram("downstream_cx_length_ms", nil),
	}
}

// HTTPStats are Envoy's HTTP connection manager counters
// (http.STAT_PREFIX.*). Bind once per connection manager config.
type HTTPStats struct {
	DownstreamCxTotal      *Counter
	DownstreamCxActive     *Gauge
	DownstreamCxDestroy    *Counter
	DownstreamCxHTTP1Total *Counter
	DownstreamCxHTTP2Total *Counter
	DownstreamRqTotal      *Counter
	DownstreamRqActive     *Gauge
	DownstreamRqHTTP1Total *Counter
	DownstreamRqHTTP2Total *Counter
	DownstreamRqTime       *Histogram
	NoRoute                *Counter
	NoCluster              *Counter
	DownstreamRqCompleted  *Counter
	// DownstreamRqTooManyPrematureResets counts HTTP/2 connections closed
	// because most of their streams were reset by the client early
	// (rapid reset, CVE-2023-44487).
	DownstreamRqTooManyPrematureResets *Counter
	classes                            [6]*Counter
}

// NewHTTPStats binds the counters of a connection manager's stat_prefix.
func NewHTTPStats(s *Store, prefix string) *HTTPStats {
	sc := s.Scope("http", prefix)
	h := &HTTPStats{
		DownstreamCxTotal:      sc.Counter("downstream_cx_total"),
		DownstreamCxActive:     sc.Gauge("downstream_cx_active"),
		DownstreamCxDestroy:    sc.Counter("downstream_cx_destroy"),
		DownstreamCxHTTP1Total: sc.Counter("downstream_cx_http1_total"),
		DownstreamCxHTTP2Total: sc.Counter("downstream_cx_http2_total"),
		DownstreamRqTotal:      sc.Counter("downstream_rq_total"),
		DownstreamRqActive:     sc.Gauge("downstream_rq_active"),
		DownstreamRqHTTP1Total: sc.Counter("downstream_rq_http1_total"),
		DownstreamRqHTTP2Total: sc.Counter("downstream_rq_http2_total"),
		DownstreamRqTime:       sc.Histogram("downstream_rq_time", nil),
		NoRoute:                sc.Counter("no_route"),
		NoCluster:              sc.Counter("no_cluster"),
		DownstreamRqCompleted:  sc.Counter("downstream_rq_completed"),

		DownstreamRqTooManyPrematureResets: sc.Counter("downstream_rq_too_many_premature_resets"),
	}
	for i := 1; i <= 5; i++ {
		h.classes[i] = sc.Counter("downstream_rq_" + strconv.Itoa(i) + "xx")
	}
	return h
}

// Request counts a request the connection manager starts serving:
// downstream_rq_total, downstream_rq_active and the per-protocol total. It
// does not allocate.
func (h *HTTPStats) Request(http2 bool) {
	h.DownstreamRqTotal.Inc()
	h.DownstreamRqActive.Inc()
	if http2 {
		h.DownstreamRqHTTP2Total.Inc()
	} else {
		h.DownstreamRqHTTP1Total.Inc()
	}
}

// Response counts a finished request: downstream_rq_active goes down,
// downstream_rq_completed, the downstream_rq_Nxx class and
// downstream_rq_time go up. It does not allocate.
func (h *HTTPStats) Response(status int, durationMs float64) {
	h.DownstreamRqActive.Dec()
	h.DownstreamRqCompleted.Inc()
	if status >= 100 && status < 600 {
		h.classes[status/100].Inc()
	}
	h.DownstreamRqTime.Observe(durationMs)
}

// TCPStats are Envoy's TCP proxy counters (tcp.STAT_PREFIX.*).
type TCPStats struct {
	DownstreamCxTotal        *Counter
	DownstreamCxNoRoute      *Counter
	DownstreamCxRxBytesTotal *Counter
	DownstreamCxTxBytesTotal *Counter
	IdleTimeout              *Counter
}

// NewTCPStats binds the counters of a TCP proxy's stat_prefix.
func NewTCPStats(s *Store, prefix string) *TCPStats {
	sc := s.Scope("tcp", prefix)
	return &TCPStats{
		DownstreamCxTotal:        sc.Counter("downstream_cx_total"),
		DownstreamCxNoRoute:      sc.Counter("downstream_cx_no_route"),
		DownstreamCxRxBytesTotal: sc.Counter("downstream_cx_rx_bytes_total"),
		DownstreamCxTxBytesTotal: sc.Counter("downstream_cx_tx_bytes_total"),
		IdleTimeout:              sc.Counter("idle_timeout"),
	}
}
