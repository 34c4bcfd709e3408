package server

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus series, with Istio-named aliases so
// existing dashboards keep working. A nil *metrics records nothing.
type metrics struct {
	pushes      *prometheus.CounterVec
	pilotPushes *prometheus.CounterVec
	nacks       *prometheus.CounterVec
	pilotNacks  *prometheus.CounterVec
	pushSeconds prometheus.Histogram
	convergence prometheus.Histogram
	pilotConv   prometheus.Histogram
	conns       prometheus.Gauge
	pilotConns  prometheus.Gauge
}

var convergenceBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trellis_xds_pushes_total",
			Help: "xDS responses sent, by type."}, []string{"type"}),
		pilotPushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_xds_pushes",
			Help: "xDS responses sent, by type (Istio name)."}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trellis_xds_nacks_total",
			Help: "xDS responses rejected by proxies, by type."}, []string{"type"}),
		pilotNacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pilot_total_xds_rejects",
			Help: "xDS responses rejected by proxies, by type (Istio name)."}, []string{"type"}),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trellis_xds_push_time_seconds",
			Help: "Time to generate and send one push to one proxy.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trellis_xds_convergence_seconds",
			Help: "Time from a config change to the proxy's ACK of it.", Buckets: convergenceBuckets}),
		pilotConv: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pilot_proxy_convergence_time",
			Help: "Time from a config change to the proxy's ACK of it (Istio name).", Buckets: convergenceBuckets}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trellis_xds_connected_proxies",
			Help: "Open ADS streams."}),
		pilotConns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pilot_xds",
			Help: "Open ADS streams (Istio name)."}),
	}
	reg.MustRegister(m.pushes, m.pilotPushes, m.nacks, m.pilotNacks, m.pushSeconds, m.convergence, m.pilotConv, m.conns, m.pilotConns)
	return m
}

func (m *metrics) pushed(typeURL string) {
	if m == nil {
		return
	}
	t := strings.ToLower(ShortType(typeURL))
	m.pushes.WithLabelValues(t).Inc()
	m.pilotPushes.WithLabelValues(t).Inc()
}

func (m *metrics) nacked(typeURL string) {
	if m == nil {
		return
	}
	t := strings.ToLower(ShortType(typeURL))
	m.nacks.WithLabelValues(t).Inc()
	m.pilotNacks.WithLabelValues(t).Inc()
}

func (m *metrics) pushTime(d time.Duration) {
	if m == nil {
		return
	}
	m.pushSeconds.Observe(d.Seconds())
}

func (m *metrics) converged(d time.Duration) {
	if m == nil {
		return
	}
	m.convergence.Observe(d.Seconds())
	m.pilotConv.Observe(d.Seconds())
}

func (m *metrics) connected(n int) {
	if m == nil {
		return
	}
	m.conns.Set(float64(n))
	m.pilotConns.Set(float64(n))
}
