package httpconn

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
	"golang.org/x/net/http2"
)

// bufConn replays bytes a reader already buffered before reading the
// connection.
type bufConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.br.Read(p) }

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
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if malformedH2(r.Header) {
			// RFC 9113 8.2.2: a request with connection-specific fields is
			// malformed; treating the stream error as a connection error is
			// allowed and the server library cannot reset with
			// PROTOCOL_ERROR from a handler.
			c.Close()
			return
		}
		m.serveH2Request(cfg, &info, w, r)
	})
	srv.ServeConn(&bufConn{Conn: c, br: br}, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: &http.Server{}})
}

// h2Exchange is the per-stream state of an HTTP/2 request, pooled: an
// exchange is a few KiB, and its header slices and buffers keep their
// capacity for the next stream.
type h2Exchange struct {
	e exchange
	s h2sink
}

var h2Exchanges = sync.Pool{New: func() any { return new(h2Exchange) }}

func (m *Manager) serveH2Request(cfg *Config, info *ConnInfo, w http.ResponseWriter, r *http.Request) {
	x := h2Exchanges.Get().(*h2Exchange)
	e := &x.e
	hdrs := e.q.Headers[:0]
	e.m, e.cfg, e.info = m, cfg, info
	e.reset()
	e.q.Headers = hdrs
	e.h2 = true
	e.start = m.now()
	x.s = h2sink{w: w, rc: http.NewResponseController(w), goAway: m.draining(cfg)}
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

// malformedH2 reports connection-specific header fields, forbidden in
// HTTP/2 (TE is allowed only as "trailers").
func malformedH2(h http.Header) bool {
	for k, vs := range h {
		switch strings.ToLower(k) {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return true
		case "te":
			for _, v := range vs {
				if !strings.EqualFold(strings.TrimSpace(v), "trailers") {
					return true
				}
			}
		}
	}
	return false
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
