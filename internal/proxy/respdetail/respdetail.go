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

// Explain renders details (Envoy's value and Trellis's context) as a
// sentence for people, e.g. "no healthy upstream in cluster
// outbound|9999|v2|bill-service.ns.svc.cluster.local". An unknown value is
// returned as is.
func Explain(details string) string {
	envoy, rest, _ := strings.Cut(details, ";")
	ctx := map[string]string{}
	var flags []string
	for _, kv := range strings.Split(rest, ";") {
		if kv == "" {
			continue
		}
		if k, v, ok := strings.Cut(kv, "="); ok {
			ctx[k] = v
		} else {
			flags = append(flags, kv)
		}
	}
	in := func(prefix string) string {
		if c := ctx["cluster"]; c != "" {
			return prefix + " " + c
		}
		return ""
	}
	var s string
	switch {
	case envoy == "":
		return ""
	case envoy == ViaUpstream:
		s = "the upstream answered" + in(", cluster")
	case envoy == NoHealthyUpstream:
		s = "no healthy upstream" + in(" in cluster")
	case envoy == ClusterNotFound:
		s = "the route names a cluster the proxy does not have" + in(":")
	case envoy == RouteNotFound:
		s = "no route matched"
		if contains(flags, "no_virtual_host") {
			s = "no virtual host matched the request's host"
		} else if vh := ctx["virtual_host"]; vh != "" {
			s += " in virtual host " + vh
		}
		if rc := ctx["route_config"]; rc != "" {
			s += " (route configuration " + rc + ")"
		}
	case envoy == FaultAbort:
		s = "fault injected"
		if vs := ctx["virtual_service"]; vs != "" {
			s += " by VirtualService " + vs
		}
		if r := ctx["route"]; r != "" {
			s += " (route " + r + ")"
		}
	case envoy == Overflow:
		s = "circuit breaker open"
		switch ctx["circuit_breaker"] {
		case "max_requests":
			s += " (upstream overflow: max_requests reached)"
		case "max_pending_requests":
			s += " (pending queue full: max_connections and max_pending_requests reached)"
		}
		s += in(" for cluster")
	case strings.HasPrefix(envoy, strings.TrimSuffix(ConnectionFailure, "}")):
		s = "upstream connection failed"
		if r := strings.TrimSuffix(strings.TrimPrefix(envoy, strings.TrimSuffix(ConnectionFailure, "}")), "}"); r != "" {
			s += " (" + strings.TrimPrefix(r, "|") + ")"
		}
		if contains(flags, "no_original_destination") {
			s = "no original destination for a passthrough cluster"
		}
		s += in(", cluster")
	case envoy == ConnectionTermination:
		s = "upstream reset before the response (connection terminated)" + in(", cluster")
	case envoy == ResetAfterResponse:
		s = "upstream reset during the response (remote reset)" + in(", cluster")
	case envoy == TimeoutAfterResponse:
		s = "upstream timed out during the response" + in(", cluster")
	case envoy == UpstreamTimeout:
		s = "upstream timeout" + in(", cluster")
	case envoy == DownstreamDisconnect:
		s = "the client disconnected before the response ended"
	case envoy == DownstreamProtocolErr:
		s = "the client's request was malformed"
	case envoy == DirectResponse:
		s = "answered by the route itself (direct response or redirect)"
		if r := ctx["route"]; r != "" {
			s += ", route " + r
		}
	case envoy == UpgradeFailed:
		s = "the route does not allow the connection upgrade"
	case strings.HasPrefix(envoy, "rbac_access_denied_matched_policy["):
		p := strings.TrimSuffix(strings.TrimPrefix(envoy, "rbac_access_denied_matched_policy["), "]")
		if p == "none" {
			return "denied by AuthorizationPolicy: no ALLOW policy matched"
		}
		return "denied by AuthorizationPolicy " + policyName(p) + " (RBAC policy " + p + ")"
	default:
		return details
	}
	if vs := ctx["virtual_service"]; vs != "" && envoy != FaultAbort {
		s += ", VirtualService " + vs
	}
	return s
}

// policyName turns the RBAC policy name ns[NS]-policy[NAME]-rule[N] into
// NS/NAME; other names are returned as they are.
func policyName(p string) string {
	ns, rest, ok := strings.Cut(strings.TrimPrefix(p, "ns["), "]-policy[")
	if !ok || !strings.HasPrefix(p, "ns[") {
		return p
	}
	name, _, ok := strings.Cut(rest, "]-rule[")
	if !ok {
		return p
	}
	return ns + "/" + name
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
