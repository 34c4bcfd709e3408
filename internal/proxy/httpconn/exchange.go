package httpconn

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/respdetail"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
	"github.com/trellis-mesh/trellis/internal/proxy/trace"
)

// maxReplayBody is the largest request body kept for retries and mirrors,
// like Envoy's per-request buffer limit.
const maxReplayBody = 64 << 10

// sink is the downstream side of an exchange (HTTP/1.1 or HTTP/2).
type sink interface {
	// abort breaks the downstream stream after a failure mid-body.
	abort()
	// writeHead sends the status and headers; n is the body length or -1.
	writeHead(status int, reason []byte, h http1.Headers, n int64) error
	io.Writer
	// flush pushes buffered bytes to the client.
	flush() error
	// finish ends the body, with trailers.
	finish(trailers http1.Headers) error
}

// exchange is one request's downstream side: the request as the client
// sent it, the sink its response goes to, the record observed at the end,
// and the replies the proxy makes itself. Its router (rt) takes the
// request upstream. HTTP/1.1 connections reuse one exchange.
type exchange struct {
	m    *Manager
	cfg  *Config
	info *ConnInfo
	sink sink

	q       route.Request
	h2      bool
	grpc    bool
	headReq bool
	upgrade []byte
	body    io.Reader
	bodyLen int64 // -1 unknown
	trusted bool
	idBuf   [36]byte
	normBuf []byte

	rt router

	h1   *h1Conn // the downstream HTTP/1.1 connection (nil for HTTP/2)
	cbuf *[]byte

	filters filterStream

	rec       Record
	tr        trace.State
	headsSent bool
	start     time.Time
	bodyOut   int64
	msgs      *grpcMessages // counting a gRPC stream's messages, or nil
}

func (e *exchange) reset() {
	e.q = route.Request{}
	e.grpc, e.headReq, e.upgrade = false, false, nil
	e.body, e.bodyLen = nil, 0
	e.rt.reset(e)
	e.rec = Record{GRPCStatus: -1}
	e.headsSent = false
	e.bodyOut = 0
}

// run takes a request through the connection manager: header preparation,
// route selection, then the filter chain, whose router leaves the response
// written to the sink.
func (e *exchange) run() {
	e.prepare()
	e.runFilters()
}

// prepare sanitizes and decorates the request headers like Envoy's
// connection manager before routing.
func (e *exchange) prepare() {
	e.begin()
	h := &e.q.Headers
	cfg := e.cfg
	if cfg.NormalizePath || cfg.MergeSlashes {
		np := normalizePath(e.normBuf[:0], e.q.Path, cfg.NormalizePath, cfg.MergeSlashes)
		if len(np) > 0 && (len(e.q.Path) == 0 || &np[0] != &e.q.Path[0]) {
			e.normBuf = np[:0] // keep the grown buffer
			e.q.Path = np
		}
	}
	remoteIP := addrIP(e.info.Remote)
	internal := isInternal(remoteIP)
	e.trusted = !cfg.UseRemoteAddress || internal
	if !e.trusted {
		for i := 0; i < len(*h); i++ {
			if n := (*h)[i].Name; len(n) > 8 && http1.EqualFold(n[:8], "x-envoy-") {
				h.Del(string(bytes.ToLower(n)))
				i--
			}
		}
	}
	if cfg.UseRemoteAddress {
		if !cfg.SkipXffAppend && remoteIP != nil {
			ip := []byte(remoteIP.String())
			if v, ok := h.Get("x-forwarded-for"); ok && len(v) > 0 {
				nv := make([]byte, 0, len(v)+2+len(ip))
				nv = append(append(append(nv, v...), ", "...), ip...)
				h.Set("x-forwarded-for", nv)
			} else {
				h.Set("x-forwarded-for", ip)
			}
		}
		h.Set("x-forwarded-proto", schemeOf(e))
		if internal {
			h.SetB(nameInternal, valueTrue)
		} else {
			h.Del("x-envoy-internal")
			if remoteIP != nil {
				h.Set("x-envoy-external-address", []byte(remoteIP.String()))
			}
		}
	} else if !h.Has("x-forwarded-proto") {
		h.Add(nameXFP, schemeOf(e))
	}
	if cfg.Inbound {
		if v, ok := h.Get(peerMetadataHeader); ok {
			e.rec.PeerMetadata = v
			h.Del(peerMetadataHeader)
			h.Del(peerMetadataIDHeader)
		}
	} else if len(e.m.PeerMetadata) > 0 {
		h.SetB(namePeerMetadata, e.m.PeerMetadata)
		h.SetB(namePeerMetadataID, e.m.PeerMetadataID)
	}
	if cfg.GenerateRequestID {
		if v, ok := h.Get("x-request-id"); !ok || len(v) == 0 || (!e.trusted && !internal) {
			h.SetB(nameRequestID, e.newRequestID())
		}
	}
	if v, ok := h.Get("content-type"); ok && bytes.HasPrefix(v, grpcContentType) {
		e.grpc = true
	}
	if t := cfg.Tracing; t != nil {
		t.Start(&e.tr, h, e.m.rand)
	} else {
		e.tr.Active = false
	}
}

func schemeOf(e *exchange) []byte {
	if len(e.q.Scheme) > 0 {
		return e.q.Scheme
	}
	return schemeHTTP
}

var (
	nameInternal       = []byte("x-envoy-internal")
	valueTrue          = []byte("true")
	nameXFP            = []byte("x-forwarded-proto")
	nameRequestID      = []byte("x-request-id")
	namePeerMetadata   = []byte(peerMetadataHeader)
	namePeerMetadataID = []byte(peerMetadataIDHeader)
	grpcContentType    = []byte("application/grpc")
)

const (
	peerMetadataHeader   = "x-envoy-peer-metadata"
	peerMetadataIDHeader = "x-envoy-peer-metadata-id"
)

// newRequestID writes a random UUID v4 into the exchange's buffer.
func (e *exchange) newRequestID() []byte {
	const hex = "0123456789abcdef"
	a, b := e.m.rand(), e.m.rand()
	var raw [16]byte
	for i := 0; i < 8; i++ {
		raw[i] = byte(a >> (8 * i))
		raw[8+i] = byte(b >> (8 * i))
	}
	raw[6] = raw[6]&0x0f | 0x40
	raw[8] = raw[8]&0x3f | 0x80
	out := e.idBuf[:0]
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return out
}

func addrIP(a net.Addr) net.IP {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP
	case *net.UDPAddr:
		return t.IP
	}
	return nil
}

// isInternal reports whether ip is loopback or RFC 1918/4193, Envoy's
// default internal address set.
func isInternal(ip net.IP) bool {
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate())
}

// headerInt reads a trusted numeric x-envoy-* request header.
func (e *exchange) headerInt(name string) (int64, bool) {
	v, ok := e.q.Headers.Get(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// localReply answers the request from the proxy itself; details is the
// precomputed %RESPONSE_CODE_DETAILS% (package respdetail).
func (e *exchange) localReply(status int, body string, flags Flags, details string, extra [][2]string) {
	e.rec.Flags |= flags
	e.rec.Status = status
	if e.rec.Details == "" {
		e.rec.Details = details
	}
	if e.headsSent {
		return
	}
	var h http1.Headers
	if e.grpc {
		// Envoy turns local replies to gRPC requests into trailers-only
		// gRPC responses.
		gs := httpToGRPC(status)
		e.rec.GRPCStatus = gs
		h = append(h, http1.Header{Name: []byte("content-type"), Value: []byte("application/grpc")},
			http1.Header{Name: []byte("grpc-status"), Value: strconv.AppendInt(nil, int64(gs), 10)},
			http1.Header{Name: []byte("grpc-message"), Value: []byte(body)})
		for _, x := range extra {
			h = append(h, http1.Header{Name: []byte(x[0]), Value: []byte(x[1])})
		}
		e.filters.encode(&h)
		e.headsSent = true
		e.sink.writeHead(200, nil, h, 0)
		e.sink.finish(nil)
		return
	}
	if body != "" {
		h = append(h, http1.Header{Name: []byte("content-type"), Value: []byte("text/plain")})
	}
	for _, x := range extra {
		h = append(h, http1.Header{Name: []byte(x[0]), Value: []byte(x[1])})
	}
	e.filters.encode(&h)
	if e.cfg.ServerName != "" {
		h = append(h, http1.Header{Name: []byte("server"), Value: []byte(e.cfg.ServerName)})
	}
	e.headsSent = true
	n := int64(len(body))
	if e.headReq {
		body = ""
	}
	if err := e.sink.writeHead(status, nil, h, n); err == nil && body != "" {
		io.WriteString(e.sink, body)
		e.bodyOut += int64(len(body))
	}
	e.sink.finish(nil)
}

// localGRPC answers a gRPC request with a trailers-only status.
func (e *exchange) localGRPC(code int, msg string, flags Flags, details string) {
	e.rec.Flags |= flags
	if e.rec.Details == "" {
		e.rec.Details = details
	}
	e.rec.Status = 200
	e.rec.GRPCStatus = code
	h := http1.Headers{
		{Name: []byte("content-type"), Value: []byte("application/grpc")},
		{Name: []byte("grpc-status"), Value: strconv.AppendInt(nil, int64(code), 10)},
		{Name: []byte("grpc-message"), Value: []byte(msg)},
	}
	e.filters.encode(&h)
	e.headsSent = true
	e.sink.writeHead(200, nil, h, 0)
	e.sink.finish(nil)
}

// httpToGRPC maps an HTTP status to a gRPC status as Envoy does.
func httpToGRPC(status int) int {
	switch status {
	case 400:
		return 13
	case 401:
		return 16
	case 403:
		return 7
	case 404:
		return 12
	case 429, 502, 503, 504:
		return 14
	}
	return 2
}

// Envoy's local reply bodies.
const (
	bodyNoHealthy  = "no healthy upstream"
	bodyConnFail   = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyOverflow   = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	bodyConnTerm   = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	bodyTimeout    = "upstream request timeout"
	bodyUpgradeRej = "upgrade not allowed"
)

// observe hands the finished request to the access log and telemetry.
func (e *exchange) observe() {
	e.rt.foldH2Body()
	r := &e.rec
	r.Start = e.start
	r.Duration = e.m.now().Sub(e.start)
	r.Method, r.Path, r.Authority = e.q.Method, e.q.Path, e.q.Authority
	r.UserAgent, _ = e.q.Headers.Get("user-agent")
	r.RequestID, _ = e.q.Headers.Get("x-request-id")
	r.ForwardedFor, _ = e.q.Headers.Get("x-forwarded-for")
	r.Protocol = "HTTP/1.1"
	if e.h2 {
		r.Protocol = "HTTP/2"
	}
	r.BytesSent = e.bodyOut
	r.Downstream, r.Local = e.info.Remote, e.info.Local
	r.RequestHeaders = e.q.Headers
	r.StatPrefix = e.cfg.StatPrefix
	r.Inbound = e.cfg.Inbound
	r.Metrics = e.cfg.Metrics
	r.MutualTLS, r.PeerPrincipal = e.info.Conn.PeerCertificate, e.info.Conn.PeerPrincipal
	e.end()
	if t := e.cfg.Tracing; t != nil && t.Reports(&e.tr) {
		e.span(t, r)
	}
	if e.cfg.Log != nil {
		e.cfg.Log.Request(r)
	}
	if e.m.Telemetry != nil {
		e.m.Telemetry.Request(r)
	}
}

// outcome is what one upstream attempt produced.
type outcome uint8

const (
	okResponse outcome = iota
	connectFailed
	timedOut
	resetBeforeResponse
	overflowed
	// downstreamFailed: the client's request body was malformed while it
	// was being sent upstream (Envoy's downstream protocol error).
	downstreamFailed
)

func reportOf(o outcome, status int) cluster.Outcome {
	switch o {
	case connectFailed:
		return cluster.Outcome{ConnectFailure: true}
	case timedOut:
		return cluster.Outcome{Timeout: true}
	case resetBeforeResponse:
		return cluster.Outcome{Reset: true}
	}
	return cluster.Outcome{Status: status}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copyBuf returns the exchange's copy buffer, taken from a pool for the
// duration of one request.
func (e *exchange) copyBuf() []byte {
	if e.cbuf == nil {
		e.cbuf = copyBufs.Get().(*[]byte)
	}
	return *e.cbuf
}

// release gives pooled buffers back.
func (e *exchange) release() {
	if e.cbuf != nil {
		copyBufs.Put(e.cbuf)
		e.cbuf = nil
	}
}

// setDetails records why an upstream response broke off after its head
// was sent: a timeout or a reset, against cluster cl (nil: unknown).
func (e *exchange) setDetails(cl *cluster.Cluster, timeout bool) {
	if e.rec.Details != "" {
		return
	}
	switch {
	case cl != nil && timeout:
		e.rec.Details = cl.Reasons.TimeoutAfter
	case cl != nil:
		e.rec.Details = cl.Reasons.ResetAfter
	case timeout:
		e.rec.Details = respdetail.TimeoutAfterResponse
	default:
		e.rec.Details = respdetail.ResetAfterResponse
	}
}

// downstreamGone records that the client went away mid-response.
func (e *exchange) downstreamGone() {
	e.rec.Flags |= FlagDC
	if e.rec.Details == "" {
		e.rec.Details = respdetail.DownstreamDisconnect
	}
}
