package proxy

import (
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
)

// failed reports whether a finished request belongs in the failure ring:
// a proxy-made response (its details say why), a response flag, an HTTP
// status of 400 or more, or a gRPC status other than OK. A success is
// decided by these comparisons alone.
func failed(r *httpconn.Record) bool {
	proxyMade := r.Details != "" && r.Details != respdetail.ViaUpstream
	return r.Status >= 400 || r.Flags != 0 || r.GRPCStatus > 0 || (proxyMade && (r.Status < 200 || r.Status >= 300))
}

// recordFailure copies r into the ring; it runs only for failed requests.
func recordFailure(ring *failures.Ring, r *httpconn.Record) {
	f := failures.Failure{
		Time:             r.Start.UTC(),
		Direction:        "outbound",
		Protocol:         r.Protocol,
		Method:           string(r.Method),
		Authority:        string(r.Authority),
		Path:             string(r.Path),
		Status:           r.Status,
		GRPCStatus:       r.GRPCStatus,
		ResponseFlags:    r.Flags.String(),
		Details:          details(r),
		ProxyMade:        r.Details != "" && r.Details != respdetail.ViaUpstream,
		Route:            r.RouteName,
		UpstreamCluster:  r.ClusterName,
		TransportFailure: r.TransportFailure,
		RequestID:        string(r.RequestID),
		DurationMillis:   int64(r.Duration / time.Millisecond),
		Attempts:         r.Attempts,
		Downstream:       addrString(r.Downstream),
	}
	if r.Inbound {
		f.Direction = "inbound"
	}
	if r.Host != nil {
		f.UpstreamHost = r.Host.Address
	}
	if r.Cluster != nil && r.Cluster.Service != nil {
		f.DestinationService = r.Cluster.Service.Host
	}
	ring.Add(f)
}
