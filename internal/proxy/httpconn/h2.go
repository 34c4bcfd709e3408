package httpconn

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
	"golang.org/x/net/http2"
)

// Envoy's premature-reset limit (its runtime keys
// overload.premature_reset_total_stream_count and
// overload.premature_reset_min_stream_lifetime_seconds): a connection whose
// streams are, past the first prematureResetStreams, at least half reset by
// the client within prematureResetLifetime of their start is closed.
const (
	prematureResetStreams  = 500
	prematureResetLifetime = time.Second
)

// h2Conn is a downstream connection as the HTTP/2 server library reads
// it: it replays the bytes the protocol sniffing buffered, counts how the
// connection's streams end, and, once the client is found abusive,
// makes the library's frame reader fail with ENHANCE_YOUR_CALM, which the
// library answers with a GOAWAY carrying that code before closing. (The
// library has no other way to end one connection with a code.)
type h2Conn struct {
	net.Conn
	br *bufio.Reader
	// ended and premature count the streams whose handler returned, and
	// those of them the client reset early.
	ended, premature atomic.Int64
	calm             atomic.Bool
	flood            controlFlood
}

var errEnhanceYourCalm = http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.calm.Load() {
		return 0, errEnhanceYourCalm
	}
	n, err := c.br.Read(p)
	if err != nil && c.calm.Load() {
		err = errEnhanceYourCalm
	}
	if c.flood.read(p[:n]) {
		// The client does not read what it asks for (Envoy: outbound
		// control frame flood): its connection is dropped, as a GOAWAY
		// would wait behind the unread acknowledgements.
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *h2Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.flood.wrote(p[:n])
	return n, err
}

// streamEnded counts a stream whose handler returned and reports whether
// the connection is now to be closed for too many premature resets.
func (c *h2Conn) streamEnded(premature bool) bool {
	ended, p := c.ended.Add(1), c.premature.Load()
	if premature {
		p = c.premature.Add(1)
	}
	if ended < prematureResetStreams {
		// Too early to judge a ratio, unless the resets alone already
		// make half of the threshold.
		return 2*p >= prematureResetStreams
	}
	return 2*p >= ended
}

// enhanceYourCalm ends the connection with GOAWAY ENHANCE_YOUR_CALM: the
// frame reader, woken by the past read deadline, reports the error.
func (c *h2Conn) enhanceYourCalm() bool {
	if !c.calm.CompareAndSwap(false, true) {
		return false
	}
	c.Conn.SetReadDeadline(time.Unix(1, 0))
	return true
}

func (m *Manager) h2server() *http2.Server {
	m.h2once.Do(func() {
		m.h2srv = &http2.Server{
			MaxConcurrentStreams: 1000,
			IdleTimeout:          time.Hour,
			// The RFC 9113 default frame size (Envoy's too). The library's
			// default of 1 MiB makes peers' x/net clients, the other hop
			// included, take a 512 KiB scratch buffer per request body.
			MaxReadFrameSize: 16 << 10,
		}
		// Registering the server on an http.Server (which serves nothing
		// itself) makes the library track its connections, so that
		// GoAway can reach the idle ones too.
		m.h2base = &http.Server{}
		if err := http2.ConfigureServer(m.h2base, m.h2srv); err != nil {
			panic("httpconn: http2.ConfigureServer: " + err.Error())
		}
	})
	return m.h2srv
}

// GoAway sends a graceful GOAWAY on every HTTP/2 downstream connection
// open now: the client sends its next requests on a new connection, and
// the streams in progress finish before the connection closes. A hot
// restart's old process calls it as it starts draining (an idle
// connection would otherwise hear of the drain only on its next
// request); connections opened later learn it from their responses.
func (m *Manager) GoAway() {
	m.h2server()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing to wait for: the server has no listener of its own
	m.h2base.Shutdown(ctx)
}

func (m *Manager) serveH2(ctx context.Context, cfg *Config, c net.Conn, br *bufio.Reader, info ConnInfo) {
	srv := m.h2server()
	hc := &h2Conn{Conn: c, br: br, flood: newControlFlood()}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A stream's context ends early when the client resets it, and
		// also when ctx does (the listener version retired): only the
		// first is the client's doing.
		if r.Context().Err() != nil && ctx.Err() == nil {
			// Reset before its handler ran: nothing goes upstream.
			m.h2StreamEnded(cfg, hc, true)
			return
		}
		if tooManyFields(r.Header, cfg.MaxHeadersCount) {
			// As HTTP/1.1 and as the library does for a list past
			// SETTINGS_MAX_HEADER_LIST_SIZE: 431, nothing goes upstream.
			w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		start := m.now()
		// A stream of a retired listener version is served by it, and its
		// response tells the client to open its next streams on a new
		// connection (graceful GOAWAY), before the version's drain time
		// ends and its connections are closed.
		m.serveH2Request(cfg, &info, w, r, ctx.Err() != nil)
		// The stream's context ends before its handler returns when the
		// client reset it (or the connection ended).
		m.h2StreamEnded(cfg, hc, r.Context().Err() != nil && ctx.Err() == nil && m.now().Sub(start) < prematureResetLifetime)
	})
	srv.ServeConn(hc, &http2.ServeConnOpts{Context: ctx, Handler: h,
		BaseConfig: &http.Server{MaxHeaderBytes: h2MaxHeaderBytes(cfg.MaxRequestHeadersBytes)}})
}

func (m *Manager) h2StreamEnded(cfg *Config, hc *h2Conn, premature bool) {
	if hc.streamEnded(premature) && hc.enhanceYourCalm() && cfg.Stats != nil {
		cfg.Stats.DownstreamRqTooManyPrematureResets.Inc()
	}
}

// h2MaxHeaderBytes is the http.Server.MaxHeaderBytes that makes the
// library advertise and enforce a SETTINGS_MAX_HEADER_LIST_SIZE of n: it
// adds 320 bytes of slack to the value it is given.
func h2MaxHeaderBytes(n int) int {
	const slack = 32 * 10
	if n <= slack {
		return 1
	}
	return n - slack
}

// tooManyFields reports a header list of more than max fields (the
// pseudo-header fields are not counted).
func tooManyFields(h http.Header, max int) bool {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return max > 0 && n > max
}

// h2Exchange is the per-stream state of an HTTP/2 request, pooled: an
// exchange is a few KiB, and its header slices and buffers keep their
// capacity for the next stream.
type h2Exchange struct {
	e exchange
	s h2sink
}

var h2Exchanges = sync.Pool{New: func() any { return new(h2Exchange) }}

func (m *Manager) serveH2Request(cfg *Config, info *ConnInfo, w http.ResponseWriter, r *http.Request, retired bool) {
	x := h2Exchanges.Get().(*h2Exchange)
	e := &x.e
	hdrs := e.q.Headers[:0]
	e.m, e.cfg, e.info = m, cfg, info
	e.reset()
	e.q.Headers = hdrs
	e.h2 = true
	e.start = m.now()
	x.s = h2sink{w: w, rc: http.NewResponseController(w), goAway: retired || m.draining(cfg)}
	e.sink = &x.s
	e.q.Method = []byte(r.Method)
	e.q.Authority = []byte(r.Host)
	e.q.Path = []byte(r.RequestURI)
	if len(e.q.Path) == 0 {
		e.q.Path = []byte(r.URL.RequestURI())
	}
	e.q.Scheme = schemeHTTP
	if info.TLS {
		e.q.Scheme = schemeHTTPS
	}
	e.headReq = r.Method == http.MethodHead
	for k, vs := range r.Header {
		lk := lowerName(k)
		if http1.IsHopByHop(lk) || string(lk) == "host" || string(lk) == "content-length" {
			if string(lk) == "te" {
				for _, v := range vs {
					if http1.HasToken([]byte(v), "trailers") {
						e.q.Headers = append(e.q.Headers, http1.Header{Name: lk, Value: trailersValue})
						break
					}
				}
			}
			continue
		}
		for _, v := range vs {
			// r.Header's strings are immutable: view them as bytes.
			e.q.Headers = append(e.q.Headers, http1.Header{Name: lk, Value: stringBytes(v)})
		}
	}
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0) {
		e.body = r.Body
		e.bodyLen = r.ContentLength
	}
	defer func() {
		if v := recover(); v != nil {
			e.rt.up.discard()
			e.observe()
			e.release()
			panic(v)
		}
	}()
	// A body the response did not need stays unread: when the handler
	// returns, the server ends the stream and resets the rest of the
	// upload with NO_ERROR (RFC 9113 8.1).
	e.run()
	e.observe()
	e.release()
	// Drop the references into this request before pooling.
	clear(e.q.Headers)
	clear(e.rt.outHdr)
	e.q.Headers, e.rt.outHdr = e.q.Headers[:0], e.rt.outHdr[:0]
	e.q, e.body, e.sink, e.info, e.m, e.cfg = route.Request{Headers: e.q.Headers}, nil, nil, nil, nil, nil
	e.rec = Record{}
	x.s = h2sink{}
	h2Exchanges.Put(x)
}

// h2sink writes a response on an HTTP/2 stream.
type h2sink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	aborted bool
	// goAway ends the connection gracefully after this stream: the
	// server library turns a "connection: close" response field into a
	// GOAWAY and drops the field (HTTP/2 has no connection header).
	goAway bool
}

func (s *h2sink) writeHead(status int, _ []byte, h http1.Headers, n int64) error {
	hdr := s.w.Header()
	trailersOnly := false
	for _, f := range h {
		k := canonicalKey(f.Name)
		hdr[k] = append(hdr[k], string(f.Value))
		if k == "Grpc-Status" {
			trailersOnly = true
		}
	}
	if n >= 0 {
		hdr.Set("Content-Length", itoa(n))
	}
	if s.goAway {
		hdr.Set("Connection", "close")
	}
	s.w.WriteHeader(status)
	if trailersOnly {
		// A gRPC trailers-only response must stay one HEADERS frame with
		// END_STREAM: let the handler's return send it.
		return nil
	}
	return s.rc.Flush()
}

func (s *h2sink) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *h2sink) flush() error { return s.rc.Flush() }

func (s *h2sink) finish(trailers http1.Headers) error {
	hdr := s.w.Header()
	for _, t := range trailers {
		k := http.TrailerPrefix + canonicalKey(t.Name)
		hdr[k] = append(hdr[k], string(t.Value))
	}
	return nil
}

// abort resets the stream (panicking with ErrAbortHandler is how net/http
// handlers reset an HTTP/2 stream).
func (s *h2sink) abort() {
	s.aborted = true
	panic(http.ErrAbortHandler)
}

func itoa(n int64) string {
	var b [20]byte
	return string(http1.AppendInt(b[:0], n))
}
