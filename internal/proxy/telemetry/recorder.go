package telemetry

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Reporter says which end of a call recorded it.
type Reporter uint8

// Reporters: the client side's proxy (outbound) reports "source", the
// server side's proxy (inbound) reports "destination".
const (
	Source Reporter = iota
	Destination
)

func (r Reporter) String() string {
	if r == Destination {
		return "destination"
	}
	return "source"
}

// Key identifies everything about a call that is fixed per connection or
// per cluster: build it once (with interned pointers) and pass it to every
// Request/TCP call.
type Key struct {
	Reporter Reporter
	// Source and Destination are the workloads at each end (nil = unknown).
	Source, Destination *Peer
	// Service is the destination service (nil = unknown).
	Service *Service
	// Protocol is request_protocol: "http", "grpc" or "tcp".
	Protocol string
	// Security is connection_security_policy: "unknown" on the source
	// side, "none" or "mutual_tls" on the destination side.
	Security string
}

type seriesKey struct {
	Key
	code  int32
	grpc  int32
	flags string
}

// Buckets Istio's standard metrics use.
var (
	DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	BytesBuckets    = []float64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}
)

type httpSeries struct {
	labels   string
	requests atomic.Uint64
	duration *stats.Histogram
	reqBytes *stats.Histogram
	resBytes *stats.Histogram
	reqMsgs  atomic.Uint64
	respMsgs atomic.Uint64
}

type tcpSeries struct {
	labels   string
	sent     atomic.Uint64
	received atomic.Uint64
	opened   atomic.Uint64
	closed   atomic.Uint64
}

// Recorder holds every series of the standard metrics. Its zero value is
// not usable; create it with NewRecorder. Safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	http atomic.Pointer[map[seriesKey]*httpSeries]
	tcp  atomic.Pointer[map[seriesKey]*tcpSeries]
	// Interner interns Peers and Services for building Keys.
	Interner *Interner
}

// NewRecorder returns an empty recorder using in to intern label sets (nil
// makes a new one).
func NewRecorder(in *Interner) *Recorder {
	if in == nil {
		in = &Interner{}
	}
	r := &Recorder{Interner: in}
	h := map[seriesKey]*httpSeries{}
	t := map[seriesKey]*tcpSeries{}
	r.http.Store(&h)
	r.tcp.Store(&t)
	return r
}

// Request records one finished HTTP or gRPC request: istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes. grpcStatus < 0 means not gRPC; flags is Envoy's
// response flags ("-" or "" for none). After a series exists it does not
// allocate or lock.
func (r *Recorder) Request(k *Key, code, grpcStatus int, flags string, durationMs float64, reqBytes, respBytes uint64) {
	if flags == "" {
		flags = "-"
	}
	sk := seriesKey{Key: *k, code: int32(code), grpc: int32(grpcStatus), flags: flags}
	s := (*r.http.Load())[sk]
	if s == nil {
		s = r.newHTTP(sk)
	}
	s.requests.Add(1)
	s.duration.Observe(durationMs)
	s.reqBytes.Observe(float64(reqBytes))
	s.resBytes.Observe(float64(respBytes))
}

// GRPCMessages adds to istio_request_messages_total and
// istio_response_messages_total of a gRPC request's series (same key and
// result as its Request call); streaming calls report as messages flow or
// once at the end.
func (r *Recorder) GRPCMessages(k *Key, code, grpcStatus int, flags string, reqMsgs, respMsgs uint64) {
	if flags == "" {
		flags = "-"
	}
	sk := seriesKey{Key: *k, code: int32(code), grpc: int32(grpcStatus), flags: flags}
	s := (*r.http.Load())[sk]
	if s == nil {
		s = r.newHTTP(sk)
	}
	s.reqMsgs.Add(reqMsgs)
	s.respMsgs.Add(respMsgs)
}

// TCPConn meters one TCP connection into istio_tcp_connections_opened_total,
// istio_tcp_connections_closed_total, istio_tcp_received_bytes_total (bytes
// of the request direction, downstream to upstream) and
// istio_tcp_sent_bytes_total (the response direction). Its methods must not
// be called concurrently.
type TCPConn struct {
	r      *Recorder
	key    Key
	live   *tcpSeries // the series without response flags
	opened bool
}

// TCPConn starts metering a connection with the labels of k.
func (r *Recorder) TCPConn(k *Key) *TCPConn {
	return &TCPConn{r: r, key: *k}
}

func (c *TCPConn) series() *tcpSeries {
	if c.live == nil {
		c.live = c.r.tcpSeries(&c.key, "-")
	}
	return c.live
}

// Opened counts the connection opened (once its upstream is connected).
func (c *TCPConn) Opened() {
	if !c.opened {
		c.opened = true
		c.series().opened.Add(1)
	}
}

// Bytes adds bytes moved while the connection is open.
func (c *TCPConn) Bytes(received, sent uint64) {
	s := c.series()
	s.received.Add(received)
	s.sent.Add(sent)
}

// Closed counts the connection closed with its response flags ("-" or ""
// for none) and the bytes not reported yet. A connection never opened
// (it failed before its upstream was connected) counts as opened here, in
// the same series, as Istio reports a connection that ends before its
// first periodic report.
func (c *TCPConn) Closed(flags string, received, sent uint64) {
	s := c.r.tcpSeries(&c.key, flags)
	if !c.opened {
		c.opened = true
		s.opened.Add(1)
	}
	s.closed.Add(1)
	s.received.Add(received)
	s.sent.Add(sent)
}

func (r *Recorder) tcpSeries(k *Key, flags string) *tcpSeries {
	if flags == "" {
		flags = "-"
	}
	sk := seriesKey{Key: *k, code: -1, grpc: -1, flags: flags}
	if s := (*r.tcp.Load())[sk]; s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.tcp.Load()
	if s := old[sk]; s != nil {
		return s
	}
	s := &tcpSeries{labels: labels(sk, false)}
	next := make(map[seriesKey]*tcpSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[sk] = s
	r.tcp.Store(&next)
	return s
}

func (r *Recorder) newHTTP(sk seriesKey) *httpSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.http.Load()
	if s := old[sk]; s != nil {
		return s
	}
	s := &httpSeries{labels: labels(sk, true),
		duration: stats.NewHistogram(DurationBuckets),
		reqBytes: stats.NewHistogram(BytesBuckets),
		resBytes: stats.NewHistogram(BytesBuckets)}
	// Copy-on-write: series are few (hundreds) and created rarely, so
	// readers never lock.
	next := make(map[seriesKey]*httpSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[sk] = s
	r.http.Store(&next)
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// orLatest is Istio's default for a canonical revision it does not know.
func orLatest(s string) string {
	if s == "" {
		return "latest"
	}
	return s
}

// labels renders a series' label set in Istio's order.
func labels(k seriesKey, http bool) string {
	var src, dst Peer
	if k.Source != nil {
		src = *k.Source
	}
	if k.Destination != nil {
		dst = *k.Destination
	}
	var svc Service
	if k.Service != nil {
		svc = *k.Service
	}
	var b strings.Builder
	add := func(name, value string) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(stats.EscapeLabel(value))
		b.WriteByte('"')
	}
	add("reporter", k.Reporter.String())
	add("source_workload", orUnknown(src.Workload))
	add("source_canonical_service", orUnknown(src.CanonicalService))
	add("source_canonical_revision", orLatest(src.CanonicalRevision))
	add("source_workload_namespace", orUnknown(src.Namespace))
	add("source_principal", orUnknown(src.Principal))
	add("source_app", orUnknown(src.App))
	add("source_version", orUnknown(src.Version))
	add("source_cluster", orUnknown(src.Cluster))
	add("destination_workload", orUnknown(dst.Workload))
	add("destination_workload_namespace", orUnknown(dst.Namespace))
	add("destination_principal", orUnknown(dst.Principal))
	add("destination_app", orUnknown(dst.App))
	add("destination_version", orUnknown(dst.Version))
	add("destination_service", orUnknown(svc.Host))
	add("destination_service_name", orUnknown(svc.Name))
	add("destination_service_namespace", orUnknown(svc.Namespace))
	add("destination_canonical_service", orUnknown(dst.CanonicalService))
	add("destination_canonical_revision", orLatest(dst.CanonicalRevision))
	add("destination_cluster", orUnknown(dst.Cluster))
	add("request_protocol", orUnknown(k.Protocol))
	if http {
		add("response_code", strconv.Itoa(int(k.code)))
		g := ""
		if k.grpc >= 0 {
			g = strconv.Itoa(int(k.grpc))
		}
		add("grpc_response_status", g)
	}
	add("response_flags", k.flags)
	add("connection_security_policy", orUnknown(k.Security))
	return b.String()
}

// WritePrometheus renders every series in the Prometheus text format.
func (r *Recorder) WritePrometheus(w io.Writer) error {
	bw := bufio.NewWriter(w)
	hs := make([]*httpSeries, 0)
	for _, s := range *r.http.Load() {
		hs = append(hs, s)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].labels < hs[j].labels })
	ts := make([]*tcpSeries, 0)
	for _, s := range *r.tcp.Load() {
		ts = append(ts, s)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].labels < ts[j].labels })
	if len(hs) > 0 {
		bw.WriteString("# TYPE istio_requests_total counter\n")
		for _, s := range hs {
			writeCounter(bw, "istio_requests_total", s.labels, s.requests.Load())
		}
		for _, m := range []struct {
			name string
			get  func(*httpSeries) *stats.Histogram
		}{
			{"istio_request_duration_milliseconds", func(s *httpSeries) *stats.Histogram { return s.duration }},
			{"istio_request_bytes", func(s *httpSeries) *stats.Histogram { return s.reqBytes }},
			{"istio_response_bytes", func(s *httpSeries) *stats.Histogram { return s.resBytes }},
		} {
			bw.WriteString("# TYPE " + m.name + " histogram\n")
			for _, s := range hs {
				stats.WriteHistogram(bw, m.name, s.labels, m.get(s).Snapshot())
			}
		}
		var grpc []*httpSeries
		for _, s := range hs {
			if s.reqMsgs.Load()+s.respMsgs.Load() > 0 {
				grpc = append(grpc, s)
			}
		}
		if len(grpc) > 0 {
			bw.WriteString("# TYPE istio_request_messages_total counter\n")
			for _, s := range grpc {
				writeCounter(bw, "istio_request_messages_total", s.labels, s.reqMsgs.Load())
			}
			bw.WriteString("# TYPE istio_response_messages_total counter\n")
			for _, s := range grpc {
				writeCounter(bw, "istio_response_messages_total", s.labels, s.respMsgs.Load())
			}
		}
	}
	if len(ts) > 0 {
		for _, m := range []struct {
			name string
			get  func(*tcpSeries) uint64
		}{
			{"istio_tcp_connections_opened_total", func(s *tcpSeries) uint64 { return s.opened.Load() }},
			{"istio_tcp_connections_closed_total", func(s *tcpSeries) uint64 { return s.closed.Load() }},
			{"istio_tcp_received_bytes_total", func(s *tcpSeries) uint64 { return s.received.Load() }},
			{"istio_tcp_sent_bytes_total", func(s *tcpSeries) uint64 { return s.sent.Load() }},
		} {
			bw.WriteString("# TYPE " + m.name + " counter\n")
			for _, s := range ts {
				writeCounter(bw, m.name, s.labels, m.get(s))
			}
		}
	}
	return bw.Flush()
}

func writeCounter(bw *bufio.Writer, name, labels string, v uint64) {
	bw.WriteString(name)
	bw.WriteByte('{')
	bw.WriteString(labels)
	bw.WriteString("} ")
	bw.WriteString(strconv.FormatUint(v, 10))
	bw.WriteByte('\n')
}
