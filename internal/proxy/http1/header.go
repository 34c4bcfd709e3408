package http1

import (
	"bytes"
	"errors"
	"strconv"
)

// Header is one header field. Name and Value point into the message's
// buffer and are valid until the message is reset.
type Header struct {
	Name  []byte
	Value []byte
}

// Headers is an ordered list of header fields; lookups are
// case-insensitive on the name.
type Headers []Header

// Get returns the value of the first field named name (lower-case ASCII).
func (h Headers) Get(name string) ([]byte, bool) {
	for i := range h {
		if EqualFold(h[i].Name, name) {
			return h[i].Value, true
		}
	}
	return nil, false
}

// Has reports whether a field named name is present.
func (h Headers) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Del removes every field named name, in place.
func (h *Headers) Del(name string) {
	s := *h
	n := 0
	for i := range s {
		if !EqualFold(s[i].Name, name) {
			s[n] = s[i]
			n++
		}
	}
	clear(s[n:])
	*h = s[:n]
}

// Set replaces every field named name with one field.
func (h *Headers) Set(name string, value []byte) { h.set(name, nil, value) }

// SetB is Set with the name also given as bytes (lower case), so that
// adding a new field does not allocate the name.
func (h *Headers) SetB(name []byte, value []byte) { h.set(string(name), name, value) }

func (h *Headers) set(name string, nameB, value []byte) {
	s := *h
	for i := range s {
		if EqualFold(s[i].Name, name) {
			s[i].Value = value
			rest := s[i+1:]
			tail := Headers(rest)
			tail.Del(name)
			*h = s[:i+1+len(tail)]
			return
		}
	}
	if nameB == nil {
		nameB = []byte(name)
	}
	*h = append(s, Header{Name: nameB, Value: value})
}

// Add appends a field.
func (h *Headers) Add(name, value []byte) { *h = append(*h, Header{Name: name, Value: value}) }

// EqualFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v contains token
// (lower-case), ignoring case and surrounding spaces.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if EqualFold(bytes.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// HasToken reports whether the comma-separated header value v contains
// token (lower-case ASCII), ignoring case.
func HasToken(v []byte, token string) bool { return hasToken(v, token) }

var errBadContentLength = errors.New("http1: bad content-length")

func parseContentLength(v []byte) (int64, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || len(v) > 18 {
		return 0, errBadContentLength
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errBadContentLength
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// hopByHop lists the connection-specific fields a proxy never forwards.
// (Trailer is kept: it announces the trailer fields a chunked body ends
// with, and clients need it to expose them.)
var hopByHop = [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}

// IsHopByHop reports whether name is a connection-specific header field.
func IsHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if EqualFold(name, h) {
			return true
		}
	}
	return false
}

// AppendInt appends the decimal form of n.
func AppendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }
