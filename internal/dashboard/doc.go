// Package dashboard is trellisd's web UI: a live service graph and, per
// service, its routing config, validation findings, configured vs measured
// traffic split, proxies with their xDS sync state and recent errors.
//
// It sits beside the ADS server in trellisd and only reads: the connected
// proxies (identity from their xDS node, sync state from the server), the
// config and registry snapshots trellisd serves, and the proxies' Istio
// metrics. Metrics come from Prometheus when Options.PrometheusURL is set
// (PromQL over its HTTP API), else trellisd scrapes each connected proxy's
// /stats/prometheus itself every Options.ScrapeInterval, a bounded number at
// a time, keeping one Options.Window of samples.
//
// Flow: proxies' istio_requests_total and istio_request_duration_milliseconds
// -> Series (rate, 5xx, duration buckets over the window) -> Graph (nodes:
// workloads, services, gateways; edges: req/s, error share, p99, mTLS) and
// ServiceDetail -> JSON under /api/ -> the embedded UI (web/dist, built
// with Vite from web/src; `npm run build` in web/ refreshes it).
package dashboard
