// Package stats holds the proxy's Envoy-style statistics: counters, gauges
// and histograms named like Envoy's (cluster.NAME.upstream_rq_total,
// listener.ADDR.downstream_cx_total, http.PREFIX.downstream_rq_total).
//
// It sits beside the data path: listeners, connection managers and clusters
// create their counters once, when config is compiled, and the request path
// only does atomic adds on the returned pointers. The admin server reads
// every stat in bulk (Store.Each) to render /stats in Envoy's text format and
// /stats/prometheus in the Prometheus text exposition format, where the
// scope name becomes a label the way Envoy's tag extraction does it
// (cluster.x.upstream_rq_total -> envoy_cluster_upstream_rq_total{cluster_name="x"}).
package stats
