// Package trellisd wires the control plane together: config sources (a
// watched --config-dir, and any extra sources such as Kubernetes) feed a
// config.Store; the ServiceEntry registry and extra registries are merged
// into a registry snapshot; changes are debounced (100 ms quiet, at most
// 1 s) into one immutable state; a caching generator translates that state
// for each connected proxy; the ADS server (internal/xds/server) pushes it;
// debug and Prometheus HTTP endpoints show what happened.
//
// Flow: config.Store + registry.Source -> debounce -> state -> generator
// (translate; the outbound half cached per translate.OutboundProxy key) ->
// xds/server -> proxies.
//
// Endpoints: ADS on Options.XDSAddress (:15010); on Options.DebugAddress
// (:8080) /debug/syncz (per proxy and type: version sent, version ACKed,
// last NACK), /debug/configz (served resources, files rejected),
// /debug/registryz (services, endpoints), /debug/config_dump?proxyID=ID
// (the xDS one connected proxy is given) and /debug/pprof/; Prometheus
// /metrics on Options.MetricsAddress (:15014); the web dashboard
// (internal/dashboard: service graph, per-service config and traffic) on
// Options.DashboardAddress (127.0.0.1:20001), reading the connected
// proxies, the served snapshots and the proxies' metrics.
//
// The CA (internal/ca) is served on Options.CAAddress (:15012): Istio's
// IstioCertificateService over TLS, with the root from a plugged-in cacerts
// directory or Secret, or a self-signed root persisted in CADir or the
// istio-ca-secret Secret; see docs/security.md.
//
// Other sources plug in through Options: Store (a store other sources also
// write), ConfigSources (started with the store), Registries (merged after
// the ServiceEntry registry) and Credentials (gateway TLS secrets). The
// RequestAuthentication jwksUri documents are fetched by package jwks
// (Options.JWKSRefresh, JWKSRetry) and inlined into translate.Input.JWKS.
// Each change of any of them is debounced into a push.
package trellisd
