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
	// Metrics is the istio.stats config of the listener that saw the call
	// (nil: Istio's standard metrics).
	Metrics *Metrics
	// Dyn are the values of Metrics' request-valued tags (Metrics.Fill).
	Dyn [MaxPerRequest]string
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

// seriesLabels are a series' label set per standard metric (indexed as
// tagexpr.Metrics), rendered once when the series is created; keep is
// false for a metric the config drops.
type seriesLabels struct {
	labels [numMetrics]string
	keep   [numMetrics]bool
}

type httpSeries struct {
	seriesLabels
	requests atomic.Uint64
	duration *stats.Histogram
	reqBytes *stats.Histogram
	resBytes *stats.Histogram
	reqMsgs  atomic.Uint64
	respMsgs atomic.Uint64
}

type tcpSeries struct {
	seriesLabels
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
	s := &tcpSeries{seriesLabels: labelsOf(sk, false)}
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
	s := &httpSeries{seriesLabels: labelsOf(sk, true),
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

type label struct{ name, value string }

func addLabel(b *strings.Builder, name, value string) {
	if b.Len() > 0 {
		b.WriteByte(',')
	}
	b.WriteString(name)
	b.WriteString(`="`)
	b.WriteString(stats.EscapeLabel(value))
	b.WriteByte('"')
}

// labelsOf renders a series' label sets: Istio's standard set for every
// metric, or each metric's as its stats config says.
func labelsOf(k seriesKey, http bool) seriesLabels {
	std := standardLabels(k, http)
	var out seriesLabels
	if k.Metrics == nil {
		var b strings.Builder
		for _, l := range std {
			addLabel(&b, l.name, l.value)
		}
		s := b.String()
		for i := range out.labels {
			out.labels[i], out.keep[i] = s, true
		}
		return out
	}
	for i := range out.labels {
		out.labels[i], out.keep[i] = k.Metrics.labelsFor(i, &k, std)
	}
	return out
}

// standardLabels are a series' labels in Istio's order.
func standardLabels(k seriesKey, http bool) []label {
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
	out := make([]label, 0, 26)
	add := func(name, value string) { out = append(out, label{name, value}) }
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
	return out
}

// WritePrometheus renders every series in the Prometheus text format,
// each metric with its own label set (a stats config may drop a metric or
// change its labels). Series whose label sets for a metric are equal (a
// removed tag was their only difference) are summed into one.
func (r *Recorder) WritePrometheus(w io.Writer) error {
	bw := bufio.NewWriter(w)
	hs := make([]*httpSeries, 0)
	for _, s := range *r.http.Load() {
		hs = append(hs, s)
	}
	ts := make([]*tcpSeries, 0)
	for _, s := range *r.tcp.Load() {
		ts = append(ts, s)
	}
	counters := func(name string, i int, n int, get func(int) (*seriesLabels, uint64, bool)) {
		rows := make([]counterRow, 0, n)
		for j := 0; j < n; j++ {
			sl, v, ok := get(j)
			if ok && sl.keep[i] {
				rows = append(rows, counterRow{sl.labels[i], v})
			}
		}
		if len(rows) == 0 {
			return
		}
		sort.Slice(rows, func(a, b int) bool { return rows[a].labels < rows[b].labels })
		bw.WriteString("# TYPE " + name + " counter\n")
		for a := 0; a < len(rows); {
			v := rows[a].v
			b := a + 1
			for ; b < len(rows) && rows[b].labels == rows[a].labels; b++ {
				v += rows[b].v
			}
			writeCounter(bw, name, rows[a].labels, v)
			a = b
		}
	}
	histograms := func(name string, i int, get func(*httpSeries) *stats.Histogram) {
		rows := make([]histRow, 0, len(hs))
		for _, s := range hs {
			if s.keep[i] {
				rows = append(rows, histRow{s.labels[i], get(s).Snapshot()})
			}
		}
		if len(rows) == 0 {
			return
		}
		sort.Slice(rows, func(a, b int) bool { return rows[a].labels < rows[b].labels })
		bw.WriteString("# TYPE " + name + " histogram\n")
		for a := 0; a < len(rows); {
			h := rows[a].h
			b := a + 1
			for ; b < len(rows) && rows[b].labels == rows[a].labels; b++ {
				h = mergeSnapshots(h, rows[b].h)
			}
			stats.WriteHistogram(bw, name, rows[a].labels, h)
			a = b
		}
	}
	httpCounter := func(get func(*httpSeries) uint64, grpcOnly bool) func(int) (*seriesLabels, uint64, bool) {
		return func(j int) (*seriesLabels, uint64, bool) {
			s := hs[j]
			if grpcOnly && s.reqMsgs.Load()+s.respMsgs.Load() == 0 {
				return nil, 0, false
			}
			return &s.seriesLabels, get(s), true
		}
	}
	counters("istio_requests_total", mRequests, len(hs), httpCounter(func(s *httpSeries) uint64 { return s.requests.Load() }, false))
	histograms("istio_request_duration_milliseconds", mDuration, func(s *httpSeries) *stats.Histogram { return s.duration })
	histograms("istio_request_bytes", mRequestBytes, func(s *httpSeries) *stats.Histogram { return s.reqBytes })
	histograms("istio_response_bytes", mResponseBytes, func(s *httpSeries) *stats.Histogram { return s.resBytes })
	counters("istio_request_messages_total", mRequestMessages, len(hs), httpCounter(func(s *httpSeries) uint64 { return s.reqMsgs.Load() }, true))
	counters("istio_response_messages_total", mResponseMessages, len(hs), httpCounter(func(s *httpSeries) uint64 { return s.respMsgs.Load() }, true))
	for _, m := range []struct {
		name string
		i    int
		get  func(*tcpSeries) uint64
	}{
		{"istio_tcp_connections_opened_total", mTCPOpened, func(s *tcpSeries) uint64 { return s.opened.Load() }},
		{"istio_tcp_connections_closed_total", mTCPClosed, func(s *tcpSeries) uint64 { return s.closed.Load() }},
		{"istio_tcp_received_bytes_total", mTCPReceived, func(s *tcpSeries) uint64 { return s.received.Load() }},
		{"istio_tcp_sent_bytes_total", mTCPSent, func(s *tcpSeries) uint64 { return s.sent.Load() }},
	} {
		counters(m.name, m.i, len(ts), func(j int) (*seriesLabels, uint64, bool) {
			return &ts[j].seriesLabels, m.get(ts[j]), true
		})
	}
	return bw.Flush()
}

type counterRow struct {
	labels string
	v      uint64
}

type histRow struct {
	labels string
	h      stats.HistogramSnapshot
}

// mergeSnapshots adds two snapshots of histograms with the same bounds.
func mergeSnapshots(a, b stats.HistogramSnapshot) stats.HistogramSnapshot {
	out := stats.HistogramSnapshot{Bounds: a.Bounds, Cumulative: make([]uint64, len(a.Cumulative)), Count: a.Count + b.Count, Sum: a.Sum + b.Sum}
	for i := range out.Cumulative {
		out.Cumulative[i] = a.Cumulative[i] + b.Cumulative[i]
	}
	return out
}

func writeCounter(bw *bufio.Writer, name, labels string, v uint64) {
	bw.WriteString(name)
	bw.WriteByte('{')
	bw.WriteString(labels)
	bw.WriteString("} ")
	bw.WriteString(strconv.FormatUint(v, 10))
	bw.WriteByte('\n')
}
