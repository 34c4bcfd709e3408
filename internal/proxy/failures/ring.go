package failures

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Size is how many failures a Ring keeps by default.
const Size = 64

// maxField bounds the strings a Failure copies from a request.
const maxField = 256

// Failure is one failed request or connection as its proxy saw it.
type Failure struct {
	Time time.Time `json:"time"`
	// Direction is "inbound" (reporter destination) or "outbound".
	Direction string `json:"direction"`
	// Protocol is HTTP/1.1, HTTP/2 or TCP.
	Protocol  string `json:"protocol"`
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`
	// Status is the HTTP status (0 for TCP); GRPCStatus the gRPC status
	// of a gRPC response, else -1.
	Status     int `json:"status"`
	GRPCStatus int `json:"grpc_status"`
	// ResponseFlags are Envoy's short codes ("-" for none).
	ResponseFlags string `json:"response_flags"`
	// Details is %RESPONSE_CODE_DETAILS% (package respdetail).
	Details string `json:"details"`
	// ProxyMade reports that the proxy answered the request itself.
	ProxyMade          bool   `json:"proxy_made"`
	Route              string `json:"route,omitempty"`
	UpstreamCluster    string `json:"upstream_cluster,omitempty"`
	UpstreamHost       string `json:"upstream_host,omitempty"`
	DestinationService string `json:"destination_service,omitempty"`
	TransportFailure   string `json:"transport_failure,omitempty"`
	RequestID          string `json:"request_id,omitempty"`
	DurationMillis     int64  `json:"duration_ms"`
	Attempts           int    `json:"attempts,omitempty"`
	Downstream         string `json:"downstream,omitempty"`
}

// Ring holds the last failures; it is safe for concurrent use. The zero
// value is not usable; use New.
type Ring struct {
	mu    sync.Mutex
	buf   []Failure
	next  int
	total uint64
}

// New returns a ring keeping the last size failures (Size when size <= 0).
func New(size int) *Ring {
	if size <= 0 {
		size = Size
	}
	return &Ring{buf: make([]Failure, 0, size)}
}

// Add records f, replacing the oldest entry when the ring is full.
func (r *Ring) Add(f Failure) {
	f.Method, f.Authority, f.Path = clip(f.Method), clip(f.Authority), clip(f.Path)
	r.mu.Lock()
	r.total++
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, f)
	} else {
		r.buf[r.next] = f
	}
	r.next = (r.next + 1) % cap(r.buf)
	r.mu.Unlock()
}

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

// Snapshot is what /debug/failures serves.
type Snapshot struct {
	// Total counts every failure seen since the proxy started; Failures
	// holds the last of them, newest first.
	Total    uint64    `json:"total"`
	Capacity int       `json:"capacity"`
	Failures []Failure `json:"failures"`
}

// Snapshot copies the ring, newest first.
func (r *Ring) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Total: r.total, Capacity: cap(r.buf), Failures: make([]Failure, 0, len(r.buf))}
	for i := 1; i <= len(r.buf); i++ {
		j := (r.next - i + cap(r.buf)) % cap(r.buf)
		if len(r.buf) < cap(r.buf) {
			j = len(r.buf) - i
		}
		s.Failures = append(s.Failures, r.buf[j])
	}
	return s
}

// WriteJSON writes the snapshot as indented JSON.
func (r *Ring) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Snapshot())
}
