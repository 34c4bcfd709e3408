package proxy

import (
	"net"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/accesslog"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
)

// logs adapts the access log package to the data path's observers: a
// finished request or connection becomes an accesslog.Entry. This only
// runs when a listener configures access_log.
type logs struct{ l accesslog.Logs }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Request implements httpconn.Observer.
func (o logs) Request(r *httpconn.Record) {
	e := accesslog.Entry{
		Start:                   r.Start,
		Duration:                r.Duration,
		Method:                  string(r.Method),
		Path:                    string(r.Path),
		Authority:               string(r.Authority),
		UserAgent:               string(r.UserAgent),
		RequestID:               string(r.RequestID),
		ForwardedFor:            string(r.ForwardedFor),
		Protocol:                r.Protocol,
		Status:                  r.Status,
		Flags:                   r.Flags.String(),
		BytesReceived:           r.BytesReceived,
		BytesSent:               r.BytesSent,
		Attempts:                r.Attempts,
		UpstreamCluster:         r.ClusterName,
		DownstreamLocalAddress:  addrString(r.Local),
		DownstreamRemoteAddress: addrString(r.Downstream),
		RouteName:               r.RouteName,
		MutualTLS:               r.MutualTLS,
	}
	if r.Host != nil {
		e.UpstreamHost = r.Host.Address
		e.UpstreamDuration = r.UpstreamDuration
	}
	e.Details = details(r)
	e.UpstreamTransportFailureReason = r.TransportFailure
	hdrs := r.RequestHeaders
	e.RequestHeader = func(name string) (string, bool) {
		v, ok := hdrs.Get(name)
		return string(v), ok
	}
	upstreamMs := int64(r.UpstreamDuration / time.Millisecond)
	hasHost := r.Host != nil && r.Status > 0
	e.ResponseHeader = func(name string) (string, bool) {
		if name == "x-envoy-upstream-service-time" && hasHost {
			return strconv.FormatInt(upstreamMs, 10), true
		}
		return "", false
	}
	o.l.Write(&e)
}

// details renders Envoy's RESPONSE_CODE_DETAILS for the common cases.
func details(r *httpconn.Record) string {
	f := r.Flags
	switch {
	case r.Details != "" && f&httpconn.FlagUF != 0 && r.TransportFailure != "":
		return respdetail.WithTransportFailure(r.Details, r.TransportFailure)
	case r.Details != "":
		return r.Details
	case f&httpconn.FlagFI != 0:
		return "fault_filter_abort"
	case f&httpconn.FlagNR != 0:
		return "route_not_found"
	case f&httpconn.FlagUH != 0:
		return "no_healthy_upstream"
	case f&httpconn.FlagUT != 0:
		return "upstream_response_timeout"
	case f&httpconn.FlagUO != 0:
		return "upstream_reset_before_response_started{overflow}"
	case f&httpconn.FlagUF != 0 && r.TransportFailure != "":
		// Envoy puts the transport failure into the details, spaces
		// replaced.
		return "upstream_reset_before_response_started{connection_failure|" + strings.ReplaceAll(r.TransportFailure, " ", "_") + "}"
	case f&httpconn.FlagUF != 0:
		return "upstream_reset_before_response_started{connection_failure}"
	case f&httpconn.FlagUC != 0:
		return "upstream_reset_before_response_started{connection_termination}"
	case f&httpconn.FlagNC != 0:
		return "cluster_not_found"
	case r.Host != nil && r.Status > 0:
		return "via_upstream"
	}
	return ""
}

// Connection implements tcpproxy.Observer.
func (o logs) Connection(r *tcpproxy.Record) {
	e := accesslog.Entry{
		Start:                   r.Start,
		Duration:                r.Duration,
		Flags:                   r.Flags.String(),
		BytesReceived:           r.BytesReceived,
		BytesSent:               r.BytesSent,
		UpstreamCluster:         r.ClusterName,
		DownstreamLocalAddress:  addrString(r.Local),
		DownstreamRemoteAddress: addrString(r.Downstream),
		MutualTLS:               r.MutualTLS,
	}
	if r.Host != nil {
		e.UpstreamHost = r.Host.Address
	}
	o.l.Write(&e)
}

func accessLogs(sinks *accesslog.Sinks) httpconn.AccessLogCompiler {
	return func(list []*accesslogv3.AccessLog, path string) (httpconn.Observer, error) {
		l, err := accesslog.Compile(list, path, sinks)
		if err != nil {
			return nil, err
		}
		return logs{l}, nil
	}
}

func tcpAccessLogs(sinks *accesslog.Sinks) func(p *tcpv3.TcpProxy, path string) (tcpproxy.Observer, error) {
	return func(p *tcpv3.TcpProxy, path string) (tcpproxy.Observer, error) {
		l, err := accesslog.Compile(p.GetAccessLog(), path, sinks)
		if err != nil {
			return nil, err
		}
		return logs{l}, nil
	}
}
