package dashboard

import (
	"net"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
)

// Mesh is what the control plane shows the dashboard. Every method must be
// safe to call concurrently and cheap; returned values must not be altered.
type Mesh interface {
	// Proxies are the connected proxies.
	Proxies() []Proxy
	// Config is the config snapshot being served.
	Config() *config.Snapshot
	// Registry is the service registry being served.
	Registry() *registry.Snapshot
	// FileIssues are the problems of config files: errors keep a file out
	// of the config, warnings do not (file -> messages).
	FileIssues() (errors, warnings map[string][]string)
}

// Proxy is one connected proxy: its identity from its xDS node and its sync
// state from the ADS server.
type Proxy struct {
	ID        string
	Type      string // "sidecar" or "router"
	Workload  string // WORKLOAD_NAME, else the pod name
	Pod       string
	Namespace string
	IPs       []string
	Labels    map[string]string
	// StatsAddress is where its Prometheus endpoint listens (host:port):
	// node metadata PROMETHEUS_ADDRESS when set (a proxy not on Istio's
	// 15090), else the first instance IP with port 15090.
	StatsAddress string
	Status       server.ProxyStatus
}

// StatsPort is Istio's proxy Prometheus port.
const StatsPort = "15090"

// StatsAddressFor is a proxy's Prometheus address: explicit when given,
// else ip:15090; "" when neither is known.
func StatsAddressFor(explicit string, ips []string) string {
	if explicit != "" {
		return explicit
	}
	if len(ips) == 0 || ips[0] == "" {
		return ""
	}
	return net.JoinHostPort(ips[0], StatsPort)
}

// StatsURL is the URL the scraper reads, or "".
func (p Proxy) StatsURL() string {
	if p.StatsAddress == "" {
		return ""
	}
	return "http://" + p.StatsAddress + "/stats/prometheus"
}

// Sync states, as istioctl proxy-status names them.
const (
	Synced  = "SYNCED"
	Stale   = "STALE"
	Nacked  = "NACKED"
	NotSent = "NOT SENT"
)

// TypeSync is the sync state of one resource type.
func TypeSync(t server.TypeStatus) string {
	switch {
	case t.SentNonce == "":
		return NotSent
	case t.Nacked():
		return Nacked
	case t.Synced():
		return Synced
	default:
		return Stale
	}
}

// ProxySync sums up a proxy: NACKED when any type's last response was
// rejected, else STALE when any is unanswered, else SYNCED.
func ProxySync(st server.ProxyStatus) string {
	out := Synced
	for _, t := range st.Types {
		switch TypeSync(t) {
		case Nacked:
			return Nacked
		case Stale:
			out = Stale
		}
	}
	return out
}

// workloadName is the name a proxy's workload node gets: its
// WORKLOAD_NAME, else its pod name.
func (p Proxy) workloadName() string {
	if p.Workload != "" {
		return p.Workload
	}
	return p.Pod
}
