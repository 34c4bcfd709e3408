// Package shift is the end-to-end test of the burst scenario's rate
// watcher (internal/shift) on a real local mesh: network namespaces with
// real sidecars, trellisd watching a config directory, and a real
// Prometheus scraping the sidecars' istio_requests_total.
package shift
