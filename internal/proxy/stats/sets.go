package stats

import "strconv"

// ListenerStats are Envoy's per-listener counters (listener.ADDR.*), where
// ADDR is the listener address with '_' before the port
// ("listener.0.0.0.0_15001.downstream_cx_total"). Bind once per listener.
type ListenerStats struct {
	DownstreamCxTotal    *Counter
	DownstreamCxActive   *Gauge
	DownstreamCxDestroy  *Counter
	DownstreamCxOverflow *Counter
	NoFilterChainMatch   *Counter
	DownstreamCxLengthMs *Histogram
}

// ListenerStatName returns Envoy's stat name for a listener address:
// "0.0.0.0:15001" -> "0.0.0.0_15001".
func ListenerStatName(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i] + "_" + addr[i+1:]
		}
	}
	return addr
}

// NewListenerStats binds the counters of the listener at addr ("ip:port").
func NewListenerStats(s *Store, addr string) *ListenerStats {
	sc := s.Scope("listener", ListenerStatName(addr))
	return &ListenerStats{
		DownstreamCxTotal:    sc.Counter("downstream_cx_total"),
		DownstreamCxActive:   sc.Gauge("downstream_cx_active"),
		DownstreamCxDestroy:  sc.Counter("downstream_cx_destroy"),
		DownstreamCxOverflow: sc.Counter("downstream_cx_overflow"),
		NoFilterChainMatch:   sc.Counter("no_filter_chain_match"),
		DownstreamCxLengthMs: sc.Histogram("downstream_cx_length_ms", nil),
	}
}

// HTTPStats are Envoy's HTTP connection manager counters
// (http.STAT_PREFIX.*). Bind once per connection manager config.
type HTTPStats struct {
	DownstreamCxTotal      *Counter
	DownstreamCxActive     *Gauge
	DownstreamCxHTTP1Total *Counter
	DownstreamCxHTTP2Total *Counter
	DownstreamRqTotal      *Counter
	DownstreamRqActive     *Gauge
	DownstreamRqHTTP1Total *Counter
	DownstreamRqHTTP2Total *Counter
	DownstreamRqTimeout    *Counter
	DownstreamRqRxReset    *Counter
	DownstreamRqTxReset    *Counter
	DownstreamRqTime       *Histogram
	NoRoute                *Counter
	NoCluster              *Counter
	RqDirectResponse       *Counter
	RqRedirect             *Counter
	DownstreamRqCompleted  *Counter
	classes                [6]*Counter
}

// NewHTTPStats binds the counters of a connection manager's stat_prefix.
func NewHTTPStats(s *Store, prefix string) *HTTPStats {
	sc := s.Scope("http", prefix)
	h := &HTTPStats{
		DownstreamCxTotal:      sc.Counter("downstream_cx_total"),
		DownstreamCxActive:     sc.Gauge("downstream_cx_active"),
		DownstreamCxHTTP1Total: sc.Counter("downstream_cx_http1_total"),
		DownstreamCxHTTP2Total: sc.Counter("downstream_cx_http2_total"),
		DownstreamRqTotal:      sc.Counter("downstream_rq_total"),
		DownstreamRqActive:     sc.Gauge("downstream_rq_active"),
		DownstreamRqHTTP1Total: sc.Counter("downstream_rq_http1_total"),
		DownstreamRqHTTP2Total: sc.Counter("downstream_rq_http2_total"),
		DownstreamRqTimeout:    sc.Counter("downstream_rq_timeout"),
		DownstreamRqRxReset:    sc.Counter("downstream_rq_rx_reset"),
		DownstreamRqTxReset:    sc.Counter("downstream_rq_tx_reset"),
		DownstreamRqTime:       sc.Histogram("downstream_rq_time", nil),
		NoRoute:                sc.Counter("no_route"),
		NoCluster:              sc.Counter("no_cluster"),
		RqDirectResponse:       sc.Counter("rq_direct_response"),
		RqRedirect:             sc.Counter("rq_redirect"),
		DownstreamRqCompleted:  sc.Counter("downstream_rq_completed"),
	}
	for i := 1; i <= 5; i++ {
		h.classes[i] = sc.Counter("downstream_rq_" + strconv.Itoa(i) + "xx")
	}
	return h
}

// Response counts a finished request: downstream_rq_completed, the
// downstream_rq_Nxx class and downstream_rq_time. It does not allocate.
func (h *HTTPStats) Response(status int, durationMs float64) {
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
	UpstreamFlushTotal       *Counter
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
		UpstreamFlushTotal:       sc.Counter("upstream_flush_total"),
	}
}
