package http1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxHeaderBytes bounds a message head (request/status line plus fields),
// like Envoy's max_request_headers_kb default of 60 KiB.
const MaxHeaderBytes = 60 << 10

// MaxHeaders bounds the number of header fields, like Envoy's default 100.
const MaxHeaders = 100

// Errors returned by the parser; ErrHeaderTooLarge maps to 431, the rest
// to 400.
// ErrNotImplemented (a transfer coding other than chunked) maps to 501, as
// in Envoy.
var (
	ErrHeaderTooLarge = errors.New("http1: header too large")
	ErrMalformed      = errors.New("http1: malformed message")
	ErrNotImplemented = errors.New("http1: transfer coding not implemented")
)

// span is a byte range of head.buf.
type span struct{ off, end int32 }

// head is what requests and responses share: the raw bytes of the head and
// the parsed header list pointing into them.
type head struct {
	// MaxBytes and MaxFields bound the head (request or status line plus
	// fields) and its number of fields; zero means MaxHeaderBytes and
	// MaxHeaders. They survive the reuse of the head for the next message.
	MaxBytes, MaxFields int

	buf     []byte
	spans   []span // name, value pairs
	Headers Headers

	// ContentLength is the body length, or -1 when it is not given.
	ContentLength int64
	// Chunked is set when Transfer-Encoding ends in chunked.
	Chunked bool
	// Close is set when the sender asked to close after this message
	// (Connection: close, or HTTP/1.0 without keep-alive).
	Close bool
	// Minor is the HTTP/1.x minor version.
	Minor int
	// Upgrade is set for Connection: upgrade plus an Upgrade field.
	Upgrade bool
}

func (h *head) reset() {
	h.buf = h.buf[:0]
	h.spans = h.spans[:0]
	clear(h.Headers)
	h.Headers = h.Headers[:0]
	h.ContentLength = -1
	h.Chunked = false
	h.Close = false
	h.Minor = 1
	h.Upgrade = false
}

// readLine returns the next line without CRLF, copied into h.buf.
func (h *head) readLine(br *bufio.Reader) (span, error) {
	start := len(h.buf)
	for {
		line, err := br.ReadSlice('\n')
		if len(h.buf)+len(line) > h.maxBytes() {
			return span{}, ErrHeaderTooLarge
		}
		h.buf = append(h.buf, line...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(h.buf) > start {
			return span{}, io.ErrUnexpectedEOF
		}
		return span{}, err
	}
	end := len(h.buf) - 1 // drop \n
	if end > start && h.buf[end-1] == '\r' {
		end--
	}
	return span{int32(start), int32(end)}, nil
}

func (h *head) maxBytes() int {
	if h.MaxBytes > 0 {
		return h.MaxBytes
	}
	return MaxHeaderBytes
}

func (h *head) maxFields() int {
	if h.MaxFields > 0 {
		return h.MaxFields
	}
	return MaxHeaders
}

func (h *head) bytes(s span) []byte { return h.buf[s.off:s.end:s.end] }

// readFields reads header fields up to the empty line and derives the
// framing fields.
func (h *head) readFields(br *bufio.Reader) error {
	for {
		s, err := h.readLine(br)
		if err != nil {
			return err
		}
		line := h.bytes(s)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("%w: obsolete line folding", ErrMalformed)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: header line without colon", ErrMalformed)
		}
		for _, c := range line[:colon] {
			if !isTokenChar(c) {
				return fmt.Errorf("%w: invalid header name", ErrMalformed)
			}
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		for _, c := range line[vs:ve] {
			if c == 0 || c == '\r' || c == '\n' {
				return fmt.Errorf("%w: invalid header value", ErrMalformed)
			}
		}
		if len(h.spans)/2 >= h.maxFields() {
			return ErrHeaderTooLarge
		}
		h.spans = append(h.spans, span{s.off, s.off + int32(colon)}, span{s.off + int32(vs), s.off + int32(ve)})
	}
	for i := 0; i < len(h.spans); i += 2 {
		h.Headers = append(h.Headers, Header{Name: h.bytes(h.spans[i]), Value: h.bytes(h.spans[i+1])})
	}
	return h.framing()
}

func (h *head) framing() error {
	connUpgrade := false
	keepAlive := false
	for _, f := range h.Headers {
		switch {
		case EqualFold(f.Name, "content-length"):
			n, err := parseContentLength(f.Value)
			if err != nil {
				return fmt.Errorf("%w: content-length %q", ErrMalformed, f.Value)
			}
			if h.ContentLength >= 0 && h.ContentLength != n {
				return fmt.Errorf("%w: conflicting content-length", ErrMalformed)
			}
			h.ContentLength = n
		case EqualFold(f.Name, "transfer-encoding"):
			v := bytes.TrimSpace(f.Value)
			last := v
			if i := bytes.LastIndexByte(v, ','); i >= 0 {
				last = bytes.TrimSpace(v[i+1:])
			}
			if !EqualFold(last, "chunked") {
				return fmt.Errorf("%w: transfer-encoding %q", ErrNotImplemented, v)
			}
			h.Chunked = true
		case EqualFold(f.Name, "connection"):
			if hasToken(f.Value, "close") {
				h.Close = true
			}
			if hasToken(f.Value, "keep-alive") {
				keepAlive = true
			}
			if hasToken(f.Value, "upgrade") {
				connUpgrade = true
			}
		}
	}
	if h.Chunked {
		if h.ContentLength >= 0 {
			// RFC 9112 6.3 lets chunked win, but a message with both is
			// the classic request-smuggling shape: Envoy rejects it
			// unless allow_chunked_length is set, and so does the proxy.
			return fmt.Errorf("%w: both content-length and transfer-encoding chunked", ErrMalformed)
		}
		h.ContentLength = -1
	}
	if h.Minor == 0 && !keepAlive {
		h.Close = true
	}
	h.Upgrade = connUpgrade && h.Headers.Has("upgrade")
	return nil
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func parseVersion(v []byte) (int, bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." {
		return 0, false
	}
	switch v[7] {
	case '0':
		return 0, true
	case '1':
		return 1, true
	}
	return 0, false
}

// Request is a parsed request head. It is reused across requests on one
// connection: everything in it is valid until the next ReadRequest.
type Request struct {
	head
	Method []byte
	// Target is the request-target as sent (origin form "/p?q", or absolute
	// form for proxies).
	Target []byte
	// Host is the Host field value (empty if absent).
	Host []byte
	// Expect100 is set for Expect: 100-continue.
	Expect100 bool
}

// ReadRequest parses the next request head from br into r.
func ReadRequest(br *bufio.Reader, r *Request) error {
	r.reset()
	r.Method, r.Target, r.Host, r.Expect100 = nil, nil, nil, false
	var s span
	var err error
	for {
		// RFC 9112 2.2: ignore at least one empty line before a request.
		s, err = r.readLine(br)
		if err != nil {
			return err
		}
		if s.end > s.off {
			break
		}
		r.buf = r.buf[:0]
	}
	line := r.bytes(s)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return fmt.Errorf("%w: request line", ErrMalformed)
	}
	minor, ok := parseVersion(line[sp2+1:])
	if !ok {
		return fmt.Errorf("%w: version %q", ErrMalformed, line[sp2+1:])
	}
	for _, c := range line[:sp1] {
		if !isTokenChar(c) {
			return fmt.Errorf("%w: method", ErrMalformed)
		}
	}
	for _, c := range line[sp1+1 : sp2] {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: request target", ErrMalformed)
		}
	}
	r.Minor = minor
	mOff, tOff, tEnd := s.off, s.off+int32(sp1)+1, s.off+int32(sp2)
	if err := r.readFields(br); err != nil {
		return err
	}
	r.Method = r.bytes(span{mOff, mOff + int32(sp1)})
	r.Target = r.bytes(span{tOff, tEnd})
	if v, ok := r.Headers.Get("host"); ok {
		r.Host = v
	}
	if v, ok := r.Headers.Get("expect"); ok && EqualFold(bytes.TrimSpace(v), "100-continue") {
		r.Expect100 = true
	}
	return nil
}

// HasBody reports whether a body follows the request head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Response is a parsed response head, reused like Request.
type Response struct {
	head
	Status int
	Reason []byte
}

// ReadResponse parses the next response head from br into r.
func ReadResponse(br *bufio.Reader, r *Response) error {
	r.reset()
	s, err := r.readLine(br)
	if err != nil {
		return err
	}
	line := r.bytes(s)
	if len(line) < 12 || line[8] != ' ' {
		return fmt.Errorf("%w: status line", ErrMalformed)
	}
	minor, ok := parseVersion(line[:8])
	if !ok {
		return fmt.Errorf("%w: version", ErrMalformed)
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: status code", ErrMalformed)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return fmt.Errorf("%w: status code", ErrMalformed)
	}
	r.Minor = minor
	r.Status = code
	rOff := s.off + 12
	if len(line) > 12 {
		rOff++
	}
	if rOff > s.end {
		rOff = s.end
	}
	if err := r.readFields(br); err != nil {
		return err
	}
	r.Reason = r.bytes(span{rOff, s.end})
	return nil
}

// BodyAllowed reports whether a response to a request with the given
// method may carry a body (RFC 9112 6.3).
func (r *Response) BodyAllowed(head bool) bool {
	return !(head || r.Status < 200 || r.Status == 204 || r.Status == 304)
}
