package tagexpr

// Metric is one of Istio's standard metrics as the istio.stats filter's
// metrics[].name names it (its Prometheus name without "istio_").
type Metric struct {
	// Istio is the Telemetry API's IstioMetric enum name.
	Istio string
	// Name is the istio.stats filter's name for it.
	Name string
}

// Metrics are the standard metrics in the order the proxy renders them.
var Metrics = []Metric{
	{"REQUEST_COUNT", "requests_total"},
	{"REQUEST_DURATION", "request_duration_milliseconds"},
	{"REQUEST_SIZE", "request_bytes"},
	{"RESPONSE_SIZE", "response_bytes"},
	{"GRPC_REQUEST_MESSAGES", "request_messages_total"},
	{"GRPC_RESPONSE_MESSAGES", "response_messages_total"},
	{"TCP_OPENED_CONNECTIONS", "tcp_connections_opened_total"},
	{"TCP_CLOSED_CONNECTIONS", "tcp_connections_closed_total"},
	{"TCP_RECEIVED_BYTES", "tcp_received_bytes_total"},
	{"TCP_SENT_BYTES", "tcp_sent_bytes_total"},
}

// MetricByName returns the index in Metrics of a filter name, or of its
// Prometheus name ("istio_requests_total"), or -1.
func MetricByName(name string) int {
	for i, m := range Metrics {
		if name == m.Name || name == "istio_"+m.Name {
			return i
		}
	}
	return -1
}

// MetricNames lists the filter names, for error messages.
func MetricNames() string {
	s := ""
	for i, m := range Metrics {
		if i > 0 {
			s += ", "
		}
		s += m.Name
	}
	return s
}

// LabelName reports whether s can name a Prometheus label (a tag):
// letters, digits and '_', not starting with a digit.
func LabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}
