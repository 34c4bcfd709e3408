package outlier

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Config is the compiled envoy.config.cluster.v3.OutlierDetection. Use
// Defaults() for Envoy's defaults and override from the proto.
type Config struct {
	Consecutive5xx                     uint32
	EnforcingConsecutive5xx            uint32 // percent
	ConsecutiveGatewayFailure          uint32
	EnforcingConsecutiveGatewayFailure uint32 // percent
	ConsecutiveLocalOriginFailure      uint32
	EnforcingLocalOriginFailure        uint32 // percent
	SplitExternalLocalOriginErrors     bool
	Interval                           time.Duration
	BaseEjectionTime                   time.Duration
	MaxEjectionTime                    time.Duration
	MaxEjectionPercent                 uint32
}

// Defaults returns Envoy's defaults.
func Defaults() Config {
	return Config{
		Consecutive5xx:                     5,
		EnforcingConsecutive5xx:            100,
		ConsecutiveGatewayFailure:          5,
		EnforcingConsecutiveGatewayFailure: 0,
		ConsecutiveLocalOriginFailure:      5,
		EnforcingLocalOriginFailure:        100,
		Interval:                           10 * time.Second,
		BaseEjectionTime:                   30 * time.Second,
		MaxEjectionTime:                    300 * time.Second,
		MaxEjectionPercent:                 10,
	}
}

// Result is what one attempt to a host produced.
type Result struct {
	// Status is the HTTP status the upstream answered (0 when it did not).
	Status int
	// ConnectFailure, Timeout and Reset are local-origin failures: the
	// proxy could not connect, gave up waiting, or the connection broke.
	ConnectFailure, Timeout, Reset bool
}

// Reason is why a host was ejected.
type Reason int

// Ejection reasons.
const (
	ReasonConsecutive5xx Reason = iota
	ReasonConsecutiveGatewayFailure
	ReasonConsecutiveLocalOriginFailure
)

type hostState struct {
	consec5xx     atomic.Uint32
	consecGateway atomic.Uint32
	consecLocal   atomic.Uint32
	// guarded by Detector.mu
	ejectedAt  time.Time
	ejectFor   time.Duration
	ejectCount uint32 // multiplier, decremented each interval the host stays healthy
}

// Stats are the detector's counters, Envoy-named under
// cluster.NAME.outlier_detection.*.
type Stats struct {
	EjectionsActive                     *stats.Gauge
	EjectionsTotal                      *stats.Counter
	EjectionsOverflow                   *stats.Counter
	EjectionsEnforcedTotal              *stats.Counter
	EjectionsDetectedConsecutive5xx     *stats.Counter
	EjectionsEnforcedConsecutive5xx     *stats.Counter
	EjectionsDetectedGatewayFailure     *stats.Counter
	EjectionsEnforcedGatewayFailure     *stats.Counter
	EjectionsDetectedLocalOriginFailure *stats.Counter
	EjectionsEnforcedLocalOriginFailure *stats.Counter
}

// NewStats binds the detector's counters in a cluster scope.
func NewStats(sc stats.Scope) *Stats {
	return &Stats{
		EjectionsActive:                     sc.Gauge("outlier_detection.ejections_active"),
		EjectionsTotal:                      sc.Counter("outlier_detection.ejections_total"),
		EjectionsOverflow:                   sc.Counter("outlier_detection.ejections_overflow"),
		EjectionsEnforcedTotal:              sc.Counter("outlier_detection.ejections_enforced_total"),
		EjectionsDetectedConsecutive5xx:     sc.Counter("outlier_detection.ejections_detected_consecutive_5xx"),
		EjectionsEnforcedConsecutive5xx:     sc.Counter("outlier_detection.ejections_enforced_consecutive_5xx"),
		EjectionsDetectedGatewayFailure:     sc.Counter("outlier_detection.ejections_detected_consecutive_gateway_failure"),
		EjectionsEnforcedGatewayFailure:     sc.Counter("outlier_detection.ejections_enforced_consecutive_gateway_failure"),
		EjectionsDetectedLocalOriginFailure: sc.Counter("outlier_detection.ejections_detected_consecutive_local_origin_failure"),
		EjectionsEnforcedLocalOriginFailure: sc.Counter("outlier_detection.ejections_enforced_consecutive_local_origin_failure"),
	}
}

// Detector tracks the hosts of one cluster. It is safe for concurrent use.
type Detector struct {
	cfg      Config
	now      func() time.Time
	rnd      func() uint64
	onChange func()
	st       *Stats

	hosts atomic.Pointer[map[*lb.Host]*hostState]

	mu sync.Mutex
}

// Options are a Detector's collaborators; zero values use the real clock,
// math/rand/v2, no callback and throwaway stats.
type Options struct {
	Now      func() time.Time
	Rand     func() uint64
	OnChange func() // called (without locks held) after any ejection or return
	Stats    *Stats
}

// New returns a detector for cfg.
func New(cfg Config, opts Options) *Detector {
	d := &Detector{cfg: cfg, now: opts.Now, rnd: opts.Rand, onChange: opts.OnChange, st: opts.Stats}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rnd == nil {
		d.rnd = rand.Uint64
	}
	if d.onChange == nil {
		d.onChange = func() {}
	}
	if d.st == nil {
		d.st = NewStats(stats.NewStore().Scope("cluster", "detached"))
	}
	m := map[*lb.Host]*hostState{}
	d.hosts.Store(&m)
	return d
}

// Config returns the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// SetHosts replaces the tracked hosts, keeping the state of hosts that stay.
// Hosts that leave are un-ejected in the gauge.
func (d *Detector) SetHosts(hosts []*lb.Host) {
	d.mu.Lock()
	old := *d.hosts.Load()
	m := make(map[*lb.Host]*hostState, len(hosts))
	for _, h := range hosts {
		if s, ok := old[h]; ok {
			m[h] = s
		} else {
			m[h] = &hostState{}
		}
	}
	for h := range old {
		if _, ok := m[h]; !ok && h.Ejected() {
			d.st.EjectionsActive.Dec()
		}
	}
	d.hosts.Store(&m)
	d.mu.Unlock()
}

func isGatewayError(code int) bool { return code == 502 || code == 503 || code == 504 }

// Report records one attempt's result. A success costs a map read and up to
// three atomic stores; only a threshold crossing takes the lock.
func (d *Detector) Report(h *lb.Host, r Result) {
	s := (*d.hosts.Load())[h]
	if s == nil {
		return
	}
	local := r.ConnectFailure || r.Timeout || r.Reset
	if local && d.cfg.SplitExternalLocalOriginErrors {
		if n := s.consecLocal.Add(1); n == d.cfg.ConsecutiveLocalOriginFailure && n > 0 {
			d.maybeEject(h, s, ReasonConsecutiveLocalOriginFailure)
		}
		return
	}
	code := r.Status
	if local {
		// Without the split, local-origin errors count as the gateway
		// errors Envoy maps them to: connect failure and reset 503, timeout 504.
		code = 503
		if r.Timeout {
			code = 504
		}
	} else if d.cfg.SplitExternalLocalOriginErrors {
		s.consecLocal.Store(0) // a response from the host is a local-origin success
	}
	if code >= 500 && code <= 599 {
		if n := s.consec5xx.Add(1); n == d.cfg.Consecutive5xx && n > 0 {
			d.maybeEject(h, s, ReasonConsecutive5xx)
		}
	} else if s.consec5xx.Load() != 0 {
		s.consec5xx.Store(0)
	}
	if isGatewayError(code) {
		if n := s.consecGateway.Add(1); n == d.cfg.ConsecutiveGatewayFailure && n > 0 {
			d.maybeEject(h, s, ReasonConsecutiveGatewayFailure)
		}
	} else if s.consecGateway.Load() != 0 {
		s.consecGateway.Store(0)
	}
}

func (d *Detector) maybeEject(h *lb.Host, s *hostState, why Reason) {
	var enforcing uint32
	switch why {
	case ReasonConsecutive5xx:
		d.st.EjectionsDetectedConsecutive5xx.Inc()
		enforcing = d.cfg.EnforcingConsecutive5xx
	case ReasonConsecutiveGatewayFailure:
		d.st.EjectionsDetectedGatewayFailure.Inc()
		enforcing = d.cfg.EnforcingConsecutiveGatewayFailure
	case ReasonConsecutiveLocalOriginFailure:
		d.st.EjectionsDetectedLocalOriginFailure.Inc()
		enforcing = d.cfg.EnforcingLocalOriginFailure
	}
	// The counter that fired starts over whether or not the host is
	// ejected; an ejection resets them all.
	switch why {
	case ReasonConsecutive5xx:
		s.consec5xx.Store(0)
	case ReasonConsecutiveGatewayFailure:
		s.consecGateway.Store(0)
	case ReasonConsecutiveLocalOriginFailure:
		s.consecLocal.Store(0)
	}
	if enforcing == 0 || uint32(d.rnd()%100) >= enforcing {
		return
	}
	d.mu.Lock()
	if h.Ejected() {
		d.mu.Unlock()
		return
	}
	hosts := *d.hosts.Load()
	ejected := 0
	for hh := range hosts {
		if hh.Ejected() {
			ejected++
		}
	}
	// max_ejection_percent, but the first ejection is always allowed.
	if ejected > 0 && uint64(ejected+1)*100 > uint64(len(hosts))*uint64(d.cfg.MaxEjectionPercent) {
		d.st.EjectionsOverflow.Inc()
		d.mu.Unlock()
		return
	}
	s.consec5xx.Store(0)
	s.consecGateway.Store(0)
	s.consecLocal.Store(0)
	s.ejectCount++
	s.ejectedAt = d.now()
	s.ejectFor = d.cfg.BaseEjectionTime * time.Duration(s.ejectCount)
	if maxT := max(d.cfg.MaxEjectionTime, d.cfg.BaseEjectionTime); s.ejectFor > maxT {
		s.ejectFor = maxT
	}
	h.SetEjected(true)
	d.st.EjectionsActive.Inc()
	d.st.EjectionsTotal.Inc()
	d.st.EjectionsEnforcedTotal.Inc()
	switch why {
	case ReasonConsecutive5xx:
		d.st.EjectionsEnforcedConsecutive5xx.Inc()
	case ReasonConsecutiveGatewayFailure:
		d.st.EjectionsEnforcedGatewayFailure.Inc()
	case ReasonConsecutiveLocalOriginFailure:
		d.st.EjectionsEnforcedLocalOriginFailure.Inc()
	}
	d.mu.Unlock()
	d.onChange()
}

// Sweep is the interval timer's work: hosts whose ejection time has passed
// come back, and hosts that stayed in for a whole interval have their
// ejection multiplier lowered. It returns how many hosts came back.
func (d *Detector) Sweep() int {
	now := d.now()
	back := 0
	d.mu.Lock()
	for h, s := range *d.hosts.Load() {
		if h.Ejected() {
			if !now.Before(s.ejectedAt.Add(s.ejectFor)) {
				h.SetEjected(false)
				d.st.EjectionsActive.Dec()
				back++
			}
		} else if s.ejectCount > 0 && now.Sub(s.ejectedAt) >= s.ejectFor+d.cfg.Interval {
			s.ejectCount--
		}
	}
	d.mu.Unlock()
	if back > 0 {
		d.onChange()
	}
	return back
}

// EjectedUntil returns when an ejected host comes back (zero if not ejected).
func (d *Detector) EjectedUntil(h *lb.Host) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := (*d.hosts.Load())[h]
	if s == nil || !h.Ejected() {
		return time.Time{}
	}
	return s.ejectedAt.Add(s.ejectFor)
}

// Run sweeps every Interval until ctx ends.
func (d *Detector) Run(ctx context.Context) {
	iv := d.cfg.Interval
	if iv <= 0 {
		iv = 10 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Sweep()
		}
	}
}
