package httpconn

import (
	"strconv"

	"github.com/trellis-mesh/trellis/internal/proxy/trace"
)

// span reports the finished request's span with Envoy's standard tags;
// it runs only for a sampled request of a traced connection manager.
func (e *exchange) span(t *trace.Config, r *Record) {
	sp := &trace.Span{Start: r.Start, End: r.Start.Add(r.Duration), Tags: make([]trace.Tag, 0, 20)}
	sp.Name = r.Operation
	if sp.Name == "" {
		sp.Name = defaultOperation(r)
	}
	url := string(schemeOf(e)) + "://" + string(r.Authority) + string(r.Path)
	if n := t.MaxPathTagLength; n > 0 && len(url) > n {
		url = url[:n]
	}
	flags := "-"
	if r.Flags != 0 {
		flags = r.Flags.String()
	}
	upstream := r.ClusterName
	if upstream == "" {
		upstream = "-"
	}
	peer := "-"
	if r.Downstream != nil {
		peer = r.Downstream.String()
	}
	sp.Tag("component", "proxy")
	sp.Tag("guid:x-request-id", string(r.RequestID))
	sp.Tag("http.url", url)
	sp.Tag("http.method", string(r.Method))
	sp.Tag("downstream_cluster", "-")
	sp.Tag("user_agent", orDash(r.UserAgent))
	sp.Tag("http.protocol", r.Protocol)
	sp.Tag("peer.address", peer)
	sp.Tag("request_size", strconv.FormatInt(r.BytesReceived, 10))
	sp.Tag("response_size", strconv.FormatInt(r.BytesSent, 10))
	sp.Tag("upstream_cluster", upstream)
	sp.Tag("upstream_cluster.name", upstream)
	sp.Tag("http.status_code", strconv.Itoa(r.Status))
	sp.Tag("response_flags", flags)
	if r.GRPCStatus >= 0 {
		sp.Tag("grpc.status_code", strconv.Itoa(r.GRPCStatus))
	}
	if r.Status >= 500 || r.Status == 0 || (r.GRPCStatus > 0) {
		sp.Error = true
		sp.Tag("error", "true")
	}
	t.Finish(&e.tr, sp, e.q.Headers)
}

// defaultOperation names a span whose route has no decorator: the
// authority and "/*", like Istio's route decorators.
func defaultOperation(r *Record) string {
	if len(r.Authority) == 0 {
		return "-"
	}
	return string(r.Authority) + "/*"
}

func orDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}
