package trace

import (
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
)

// Parent is the trace context a request arrived with.
type Parent struct {
	TraceID [16]byte
	SpanID  [8]byte
	// Valid: a trace id and span id were read.
	Valid bool
	// Decided: the caller made a sampling decision (Sampled).
	Decided, Sampled bool
}

var (
	nameTraceparent = []byte("traceparent")
	nameB3          = []byte("b3")
	nameB3Trace     = []byte("x-b3-traceid")
	nameB3Span      = []byte("x-b3-spanid")
	nameB3Parent    = []byte("x-b3-parentspanid")
	nameB3Sampled   = []byte("x-b3-sampled")
	nameB3Flags     = []byte("x-b3-flags")
)

// Extract reads the caller's trace context: traceparent first, then the
// single b3 header, then the x-b3-* headers. A sampling decision without
// ids (b3: 0, x-b3-sampled alone) is kept.
func Extract(h http1.Headers) Parent {
	var p Parent
	if v, ok := h.Get("traceparent"); ok && parseTraceparent(v, &p) {
		return p
	}
	if v, ok := h.Get("b3"); ok && parseB3Single(v, &p) {
		return p
	}
	if v, ok := h.Get("x-b3-flags"); ok && string(v) == "1" {
		p.Decided, p.Sampled = true, true
	}
	if v, ok := h.Get("x-b3-sampled"); ok && !p.Decided {
		switch string(v) {
		case "1", "true", "d":
			p.Decided, p.Sampled = true, true
		case "0", "false":
			p.Decided = true
		}
	}
	t, ok1 := h.Get("x-b3-traceid")
	s, ok2 := h.Get("x-b3-spanid")
	if ok1 && ok2 && parseTraceID(t, &p.TraceID) && hexTo(s, p.SpanID[:]) && !zero(p.SpanID[:]) {
		p.Valid = true
	}
	return p
}

// traceparent: 00-<32 hex>-<16 hex>-<2 hex>; later versions may append.
func parseTraceparent(v []byte, p *Parent) bool {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') {
		return false
	}
	var ver [1]byte
	if !hexTo(v[0:2], ver[:]) || ver[0] == 0xff || (ver[0] == 0 && len(v) != 55) {
		return false
	}
	var flags [1]byte
	if !hexTo(v[3:35], p.TraceID[:]) || !hexTo(v[36:52], p.SpanID[:]) || !hexTo(v[53:55], flags[:]) {
		return false
	}
	if zero(p.TraceID[:]) || zero(p.SpanID[:]) {
		*p = Parent{}
		return false
	}
	p.Valid, p.Decided, p.Sampled = true, true, flags[0]&1 == 1
	return true
}

// b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]] or just {sampled}.
func parseB3Single(v []byte, p *Parent) bool {
	switch string(v) {
	case "0":
		p.Decided = true
		return true
	case "1", "d":
		p.Decided, p.Sampled = true, true
		return true
	}
	i := indexByte(v, '-')
	if i < 0 || !parseTraceID(v[:i], &p.TraceID) {
		return false
	}
	rest := v[i+1:]
	j := indexByte(rest, '-')
	span := rest
	if j >= 0 {
		span = rest[:j]
	}
	if len(span) != 16 || !hexTo(span, p.SpanID[:]) || zero(p.SpanID[:]) {
		*p = Parent{}
		return false
	}
	p.Valid = true
	if j >= 0 {
		s := rest[j+1:]
		if k := indexByte(s, '-'); k >= 0 {
			s = s[:k]
		}
		switch string(s) {
		case "1", "d":
			p.Decided, p.Sampled = true, true
		case "0":
			p.Decided = true
		}
	}
	return true
}

// parseTraceID reads a 16- or 32-digit trace id (B3 allows 64-bit ids).
func parseTraceID(v []byte, out *[16]byte) bool {
	*out = [16]byte{}
	switch len(v) {
	case 32:
		return hexTo(v, out[:]) && !zero(out[:])
	case 16:
		return hexTo(v, out[8:]) && !zero(out[:])
	}
	return false
}

func hexTo(v []byte, out []byte) bool {
	if len(v) != 2*len(out) {
		return false
	}
	for i := range out {
		a, ok1 := unhex(v[2*i])
		b, ok2 := unhex(v[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		out[i] = a<<4 | b
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// headerBufs holds the propagated header values of one request (the
// header list keeps references to them).
type headerBufs struct {
	traceparent [55]byte
	b3          [16 + 1 + 32 + 1 + 16 + 1 + 1 + 1 + 16]byte
	traceID     [32]byte
	spanID      [16]byte
	parentID    [16]byte
}

// inject writes the span context of s into h: traceparent (tracestate is
// passed on as it came), the x-b3-* headers, and the single b3 header when
// the caller used it.
func (s *State) inject(h *http1.Headers) {
	b := &s.bufs
	flag := byte('0')
	if s.Sampled {
		flag = '1'
	}
	tp := append(b.traceparent[:0], "00-"...)
	tp = appendHex(tp, s.TraceID[:])
	tp = append(tp, '-')
	tp = appendHex(tp, s.SpanID[:])
	tp = append(tp, '-', '0', flag)
	h.SetB(nameTraceparent, tp)
	h.SetB(nameB3Trace, appendHex(b.traceID[:0], s.TraceID[:]))
	h.SetB(nameB3Span, appendHex(b.spanID[:0], s.SpanID[:]))
	if s.HasParent {
		h.SetB(nameB3Parent, appendHex(b.parentID[:0], s.ParentID[:]))
	} else {
		h.Del("x-b3-parentspanid")
	}
	h.SetB(nameB3Sampled, sampledValue[flag-'0'])
	h.Del("x-b3-flags")
	if h.Has("b3") {
		v := appendHex(b.b3[:0], s.TraceID[:])
		v = append(v, '-')
		v = appendHex(v, s.SpanID[:])
		v = append(v, '-', flag)
		if s.HasParent {
			v = append(v, '-')
			v = appendHex(v, s.ParentID[:])
		}
		h.SetB(nameB3, v)
	}
}

var sampledValue = [2][]byte{[]byte("0"), []byte("1")}
