// Package admin serves the proxy's Envoy-compatible admin API on
// 127.0.0.1:15000 (/help, /config_dump, /clusters, /listeners, /stats,
// /stats/prometheus, /ready, /server_info, /logging, /drain_listeners,
// /quitquitquit, /reset_counters, /memory; Trellis' /xds, /debug/failures,
// and /debug/authz and /debug/authz/check, which run a described request
// through the live listeners' RBAC filters), Istio's readiness endpoint on
// :15021 (/healthz/ready), the Prometheus endpoint on :15090
// (/stats/prometheus) and pilot-agent's endpoint on :15020 (proxy +
// application metrics, /healthz/ready, and the injector's rewritten
// application probes /app-health/CONTAINER/livez|readyz|startupz from
// ISTIO_KUBE_APP_PROBERS: HTTP, TCP and gRPC health checks).
//
// It sits off the data path, reading in bulk what the rest of the proxy
// keeps: accepted xDS resources (xdsclient, through a ConfigSource), the
// cluster manager's hosts and their health, the stats store and the Istio
// telemetry recorder. Tools (trellis proxy-config, istioctl-like scripts,
// Prometheus) read it over HTTP and see Envoy's formats.
package admin
