package lb

import (
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/trellis-mesh/trellis/internal/proxy/pool"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// HealthStatus is the health an endpoint was given by EDS.
type HealthStatus int32

// EDS health states, numbered as in envoy.config.core.v3.HealthStatus.
const (
	HealthUnknown HealthStatus = iota
	HealthHealthy
	HealthUnhealthy
	HealthDraining
	HealthTimeout
	HealthDegraded
)

// String returns Envoy's name for the status.
func (s HealthStatus) String() string {
	switch s {
	case HealthHealthy:
		return "HEALTHY"
	case HealthUnhealthy:
		return "UNHEALTHY"
	case HealthDraining:
		return "DRAINING"
	case HealthTimeout:
		return "TIMEOUT"
	case HealthDegraded:
		return "DEGRADED"
	}
	return "UNKNOWN"
}

// Locality is where a host runs.
type Locality struct{ Region, Zone, SubZone string }

// Host is one upstream endpoint. Its identity fields are set when the
// cluster manager compiles an EDS or STATIC load assignment and never
// change after; its health and load fields are atomics updated by outlier
// detection, active health checks and the data path.
type Host struct {
	// Address is "ip:port" (or "host:port" for STRICT_DNS before resolution).
	Address string
	// Weight is the load-balancing weight; 0 is treated as 1.
	Weight uint32
	// Locality and Priority come from the EDS LocalityLbEndpoints.
	Locality Locality
	Priority uint32
	// LocalityWeight is the locality's load_balancing_weight (0 = unset);
	// used with Config.LocalityWeighted.
	LocalityWeight uint32
	// EDSHealth is the health_status EDS gave the endpoint.
	EDSHealth HealthStatus
	// Peer carries the endpoint's Istio identity for telemetry (from its
	// metadata filter_metadata["istio"]); nil when unknown.
	Peer *telemetry.Peer
	// ServiceAccount is the endpoint's service account (metadata
	// filter_metadata["istio"].service_account), for mutual TLS identity
	// checks later; empty when unknown.
	ServiceAccount string
	// TransportMatch is the endpoint's filter_metadata
	// ["envoy.transport_socket_match"] (e.g. tlsMode: istio), which picks
	// its transport socket among the cluster's transport_socket_matches.
	TransportMatch map[string]string
	// MTLSPrincipal is the SPIFFE ID the host's last mutual TLS
	// connection presented (verified), for source-side telemetry; nil
	// before one.
	MTLSPrincipal atomic.Pointer[string]

	hcFailed atomic.Bool
	ejected  atomic.Bool
	active   atomic.Int64

	// Conns holds the host's upstream connections (idle HTTP/1.1
	// keep-alive connections, HTTP/2 connections).
	Conns pool.Endpoint

	// Per-host counters shown by the admin /clusters page.
	RqTotal   atomic.Uint64
	RqError   atomic.Uint64
	RqSuccess atomic.Uint64
	RqTimeout atomic.Uint64
	CxTotal   atomic.Uint64
	CxActive  atomic.Int64
	CxFailed  atomic.Uint64
}

func (h *Host) weight() uint32 {
	if h.Weight == 0 {
		return 1
	}
	return h.Weight
}

// Healthy reports whether the host may receive traffic: EDS did not mark it
// unhealthy/draining/timeout, active health checking has not failed it and
// outlier detection has not ejected it.
func (h *Host) Healthy() bool {
	switch h.EDSHealth {
	case HealthUnhealthy, HealthDraining, HealthTimeout:
		return false
	}
	return !h.hcFailed.Load() && !h.ejected.Load()
}

// HealthCheckFailed reports whether active health checking failed the host.
func (h *Host) HealthCheckFailed() bool { return h.hcFailed.Load() }

// SetHealthCheckFailed records the active health check verdict and reports
// whether it changed.
func (h *Host) SetHealthCheckFailed(failed bool) bool { return h.hcFailed.Swap(failed) != failed }

// Ejected reports whether outlier detection ejected the host.
func (h *Host) Ejected() bool { return h.ejected.Load() }

// SetEjected records the outlier detection verdict and reports whether it changed.
func (h *Host) SetEjected(ejected bool) bool { return h.ejected.Swap(ejected) != ejected }

// ActiveRequests is the number of requests in flight to the host.
func (h *Host) ActiveRequests() int64 { return h.active.Load() }

// StartRequest counts a request in flight (for least request) and returns
// the function that ends it.
func (h *Host) StartRequest() { h.active.Add(1); h.RqTotal.Add(1) }

// EndRequest ends a request started with StartRequest.
func (h *Host) EndRequest() { h.active.Add(-1) }

// HealthFlags renders the host's health in the admin /clusters format:
// "healthy", or "/"-joined Envoy flags (/failed_active_hc,
// /failed_outlier_check, /failed_eds_health, /pending_active_hc ...).
func (h *Host) HealthFlags() string {
	s := ""
	if h.hcFailed.Load() {
		s += "/failed_active_hc"
	}
	if h.ejected.Load() {
		s += "/failed_outlier_check"
	}
	switch h.EDSHealth {
	case HealthUnhealthy, HealthTimeout:
		s += "/failed_eds_health"
	case HealthDraining:
		s += "/pending_dynamic_removal"
	case HealthDegraded:
		s += "/degraded_eds_health"
	}
	if s == "" {
		return "healthy"
	}
	return s
}

// Hash is the hash the hashing balancers use for request keys (route
// hash_policy results) and host keys: xxHash64, as Envoy uses.
func Hash(s string) uint64 { return xxhash.Sum64String(s) }
