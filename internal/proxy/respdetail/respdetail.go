package respdetail

import "strings"

// Envoy's response code details, as Envoy spells them.
const (
	ViaUpstream           = "via_upstream"
	RouteNotFound         = "route_not_found"
	ClusterNotFound       = "cluster_not_found"
	NoHealthyUpstream     = "no_healthy_upstream"
	FaultAbort            = "fault_filter_abort"
	DirectResponse        = "direct_response"
	UpgradeFailed         = "upgrade_failed"
	UpstreamTimeout       = "upstream_response_timeout"
	Overflow              = "upstream_reset_before_response_started{overflow}"
	ConnectionFailure     = "upstream_reset_before_response_started{connection_failure}"
	ConnectionTermination = "upstream_reset_before_response_started{connection_termination}"
	ResetAfterResponse    = "upstream_reset_after_response_started{remote_reset}"
	TimeoutAfterResponse  = "upstream_reset_after_response_started{timeout}"
	DownstreamDisconnect  = "downstream_remote_disconnect"
	DownstreamProtocolErr = "http1.codec_error"
)

// Cluster holds the details of the failures that name one cluster.
type Cluster struct {
	NoHealthy, MaxRequests, PendingOverflow string
	ConnectFailure, NoOriginalDst           string
	Timeout, Termination                    string
	ResetAfter, TimeoutAfter                string
	NotFound                                string
}

// ForCluster builds the details naming cluster name.
func ForCluster(name string) Cluster {
	c := ";cluster=" + name
	return Cluster{
		NoHealthy:       NoHealthyUpstream + c,
		MaxRequests:     Overflow + ";circuit_breaker=max_requests" + c,
		PendingOverflow: Overflow + ";circuit_breaker=max_pending_requests" + c,
		ConnectFailure:  ConnectionFailure + c,
		NoOriginalDst:   ConnectionFailure + ";no_original_destination" + c,
		Timeout:         UpstreamTimeout + c,
		Termination:     ConnectionTermination + c,
		ResetAfter:      ResetAfterResponse + c,
		TimeoutAfter:    TimeoutAfterResponse + c,
		NotFound:        ClusterNotFound + c,
	}
}

// ConfigRef turns the route metadata filter_metadata["istio"]["config"]
// (/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME) into
// "virtual_service=NS/NAME"; other kinds give "KIND=NS/NAME", an
// unrecognised value is kept as "config=VALUE", and "" stays "".
func ConfigRef(config string) string {
	if config == "" {
		return ""
	}
	parts := strings.Split(strings.Trim(config, "/"), "/")
	// apis GROUP VERSION namespaces NS KIND NAME
	if len(parts) == 7 && parts[0] == "apis" && parts[3] == "namespaces" {
		kind := strings.ReplaceAll(parts[5], "-", "_")
		return kind + "=" + parts[4] + "/" + parts[6]
	}
	return "config=" + strings.Join(strings.Fields(config), "_")
}

// Route holds the details of the local replies one route makes.
type Route struct {
	FaultAbort, Direct, UpgradeFailed string
}

// ForRoute builds the details naming route name and its Istio config
// (route metadata, see ConfigRef) in virtual host vhost.
func ForRoute(name, config, vhost string) Route {
	ctx := ""
	if ref := ConfigRef(config); ref != "" {
		ctx += ";" + ref
	}
	if name != "" {
		ctx += ";route=" + name
	}
	if vhost != "" {
		ctx += ";virtual_host=" + vhost
	}
	return Route{
		FaultAbort:    FaultAbort + ctx,
		Direct:        DirectResponse + ctx,
		UpgradeFailed: UpgradeFailed + ctx,
	}
}

// NoRoute is route_not_found in route configuration rc, when virtual host
// vhost matched the authority but none of its routes the request, or with
// vhost "" when no virtual host matched.
func NoRoute(rc, vhost string) string {
	if vhost == "" {
		return RouteNotFound + ";route_config=" + rc + ";no_virtual_host"
	}
	return RouteNotFound + ";route_config=" + rc + ";virtual_host=" + vhost
}

// WithTransportFailure is a connection failure's details (one of
// Cluster's ConnectFailure) with the TLS failure reason inside the braces,
// as Envoy logs it (spaces as underscores). It allocates; it is for the
// access log, not the request path.
func WithTransportFailure(details, reason string) string {
	reason = strings.Join(strings.Fields(reason), "_")
	if rest, ok := strings.CutPrefix(details, ConnectionFailure); ok {
		return strings.TrimSuffix(ConnectionFailure, "}") + "|" + reason + "}" + rest
	}
	return details
}

// Envoy returns the Envoy part of details, without Trellis's context.
func Envoy(details string) string {
	e, _, _ := strings.Cut(details, ";")
	return e
}
