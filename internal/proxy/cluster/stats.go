package cluster

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Stats are a cluster's Envoy-named counters (cluster.NAME.*), bound once
// when the cluster is first compiled and shared by later recompilations.
type Stats struct {
	scope stats.Scope

	UpstreamRqTotal           *stats.Counter
	UpstreamRqCompleted       *stats.Counter
	UpstreamRqTimeout         *stats.Counter
	UpstreamRqPerTryTimeout   *stats.Counter
	UpstreamRqRetry           *stats.Counter
	UpstreamRqRetrySuccess    *stats.Counter
	UpstreamRqRetryOverflow   *stats.Counter
	UpstreamRqPendingOverflow *stats.Counter
	UpstreamRqPendingTotal    *stats.Counter
	UpstreamRqRxReset         *stats.Counter
	UpstreamRqActive          *stats.Gauge
	UpstreamRqPendingActive   *stats.Gauge
	UpstreamCxTotal           *stats.Counter
	UpstreamCxActive          *stats.Gauge
	UpstreamCxConnectFail     *stats.Counter
	UpstreamCxConnectTimeout  *stats.Counter
	UpstreamCxOverflow        *stats.Counter
	UpstreamCxNoneHealthy     *stats.Counter
	UpstreamCxRxBytesTotal    *stats.Counter
	UpstreamCxTxBytesTotal    *stats.Counter
	MembershipTotal           *stats.Gauge
	MembershipHealthy         *stats.Gauge
	MembershipChange          *stats.Counter
	UpdateSuccess             *stats.Counter
	UpdateRejected            *stats.Counter
	// UpstreamRqTime (ms) is observed by Report when Outcome.Duration is
	// set; UpstreamCxConnectMs is for the pool to observe.
	UpstreamRqTime      *stats.Histogram
	UpstreamCxConnectMs *stats.Histogram

	cbCxOpen, cbPendingOpen, cbRqOpen, cbRetryOpen *stats.Gauge

	classes [6]*stats.Counter // 1xx..5xx at [1]..[5]
	// codes holds upstream_rq_CODE counters, allocated on the first
	// response so that clusters this proxy never calls stay small.
	codes atomic.Pointer[[600]atomic.Pointer[stats.Counter]]
	mu    sync.Mutex
}

func newStats(store *stats.Store, name string) *Stats {
	sc := store.Scope("cluster", name)
	s := &Stats{
		scope:                     sc,
		UpstreamRqTotal:           sc.Counter("upstream_rq_total"),
		UpstreamRqCompleted:       sc.Counter("upstream_rq_completed"),
		UpstreamRqTimeout:         sc.Counter("upstream_rq_timeout"),
		UpstreamRqPerTryTimeout:   sc.Counter("upstream_rq_per_try_timeout"),
		UpstreamRqRetry:           sc.Counter("upstream_rq_retry"),
		UpstreamRqRetrySuccess:    sc.Counter("upstream_rq_retry_success"),
		UpstreamRqRetryOverflow:   sc.Counter("upstream_rq_retry_overflow"),
		UpstreamRqPendingOverflow: sc.Counter("upstream_rq_pending_overflow"),
		UpstreamRqPendingTotal:    sc.Counter("upstream_rq_pending_total"),
		UpstreamRqRxReset:         sc.Counter("upstream_rq_rx_reset"),
		UpstreamRqActive:          sc.Gauge("upstream_rq_active"),
		UpstreamRqPendingActive:   sc.Gauge("upstream_rq_pending_active"),
		UpstreamCxTotal:           sc.Counter("upstream_cx_total"),
		UpstreamCxActive:          sc.Gauge("upstream_cx_active"),
		UpstreamCxConnectFail:     sc.Counter("upstream_cx_connect_fail"),
		UpstreamCxConnectTimeout:  sc.Counter("upstream_cx_connect_timeout"),
		UpstreamCxOverflow:        sc.Counter("upstream_cx_overflow"),
		UpstreamCxNoneHealthy:     sc.Counter("upstream_cx_none_healthy"),
		UpstreamCxRxBytesTotal:    sc.Counter("upstream_cx_rx_bytes_total"),
		UpstreamCxTxBytesTotal:    sc.Counter("upstream_cx_tx_bytes_total"),
		MembershipTotal:           sc.Gauge("membership_total"),
		MembershipHealthy:         sc.Gauge("membership_healthy"),
		MembershipChange:          sc.Counter("membership_change"),
		UpdateSuccess:             sc.Counter("update_success"),
		UpdateRejected:            sc.Counter("update_rejected"),
		UpstreamRqTime:            sc.Histogram("upstream_rq_time", nil),
		UpstreamCxConnectMs:       sc.Histogram("upstream_cx_connect_ms", nil),
		cbCxOpen:                  sc.Gauge("circuit_breakers.default.cx_open"),
		cbPendingOpen:             sc.Gauge("circuit_breakers.default.rq_pending_open"),
		cbRqOpen:                  sc.Gauge("circuit_breakers.default.rq_open"),
		cbRetryOpen:               sc.Gauge("circuit_breakers.default.rq_retry_open"),
	}
	for i := 1; i <= 5; i++ {
		s.classes[i] = sc.Counter("upstream_rq_" + strconv.Itoa(i) + "xx")
	}
	return s
}

// Scope returns the stats scope (cluster.NAME) for more counters.
func (s *Stats) Scope() stats.Scope { return s.scope }

// code returns upstream_rq_CODE and counts the class counter too; the
// per-code counter is created on first use and cached.
func (s *Stats) code(status int) *stats.Counter {
	if status >= 100 && status < 600 {
		s.classes[status/100].Inc()
		codes := s.codes.Load()
		if codes != nil {
			if c := codes[status].Load(); c != nil {
				return c
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if codes = s.codes.Load(); codes == nil {
			codes = new([600]atomic.Pointer[stats.Counter])
			s.codes.Store(codes)
		}
		if c := codes[status].Load(); c != nil {
			return c
		}
		c := s.scope.Counter("upstream_rq_" + strconv.Itoa(status))
		codes[status].Store(c)
		return c
	}
	return s.scope.Counter("upstream_rq_other")
}
