package listener

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"time"
)

// maxClientHello bounds how much of a TLS ClientHello is peeked (Envoy's
// tls_inspector reads up to 64 KiB; real hellos are well under 16 KiB).
const maxClientHello = 16 << 10

var errNotTLS = errors.New("not a TLS client hello")

// sniff inspects the first bytes of a connection without consuming them
// (they stay in br): a TLS ClientHello yields transport "tls", SNI and
// ALPN; an HTTP/1.x request line yields ALPN "http/1.1" and the h2c
// preface "h2c"; anything else is raw_buffer. A timeout (no bytes, a
// server-first protocol) leaves the facts unsniffed.
func sniff(c net.Conn, br *bufio.Reader, timeout time.Duration, f *ConnFacts) {
	f.Transport = "raw_buffer"
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
		defer c.SetReadDeadline(time.Time{})
	}
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	f.Sniffed = true
	if first[0] == 0x16 {
		hdr, err := br.Peek(5)
		if err != nil {
			return
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n > maxClientHello {
			n = maxClientHello
		}
		rec, err := br.Peek(5 + n)
		if err != nil {
			return
		}
		sni, alpn, err := ParseClientHello(rec)
		if err == nil {
			f.Transport, f.ServerName, f.ALPN = "tls", sni, alpn
		}
		return
	}
	// HTTP: decide from what arrived; wait for more only while the bytes
	// could still be the start of a request line or the h2c preface.
	for {
		p, _ := br.Peek(br.Buffered())
		switch {
		case bytes.HasPrefix(p, []byte(h2cPreface)):
			f.ALPN = []string{"h2c"}
			return
		case looksHTTP1(p):
			f.ALPN = []string{"http/1.1"}
			return
		case !couldBeHTTP(p) || len(p) >= len(h2cPreface):
			return
		}
		if _, err := br.Peek(len(p) + 1); err != nil {
			return
		}
	}
}

const h2cPreface = "PRI * HTTP/2.0"

// couldBeHTTP reports whether p is a prefix of a method token or of the
// h2c preface.
func couldBeHTTP(p []byte) bool {
	if bytes.HasPrefix([]byte(h2cPreface), p) {
		return true
	}
	for _, m := range methods {
		if bytes.HasPrefix([]byte(m), p) {
			return true
		}
	}
	return false
}

var methods = [...]string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

func looksHTTP1(p []byte) bool {
	for _, m := range methods {
		if bytes.HasPrefix(p, []byte(m)) {
			return true
		}
	}
	return false
}

// ParseClientHello extracts the SNI host name and the ALPN protocol list
// from a TLS record holding a ClientHello.
func ParseClientHello(rec []byte) (sni string, alpn []string, err error) {
	if len(rec) < 5 || rec[0] != 0x16 || rec[1] != 3 {
		return "", nil, errNotTLS
	}
	n := int(rec[3])<<8 | int(rec[4])
	body := rec[5:]
	if len(body) < n {
		return "", nil, errNotTLS
	}
	body = body[:n]
	// handshake header
	if len(body) < 4 || body[0] != 1 {
		return "", nil, errNotTLS
	}
	hl := int(body[1])<<16 | int(body[2])<<8 | int(body[3])
	body = body[4:]
	if hl < len(body) {
		body = body[:hl]
	}
	r := reader(body)
	if !r.skip(2+32) || !r.skipVec(1) || !r.skipVec(2) || !r.skipVec(1) {
		return "", nil, errNotTLS
	}
	if r.empty() {
		return "", nil, nil
	}
	exts, ok := r.vec(2)
	if !ok {
		return "", nil, errNotTLS
	}
	for !exts.empty() {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return "", nil, errNotTLS
		}
		switch typ {
		case 0: // server_name
			list, ok := data.vec(2)
			if !ok {
				return "", nil, errNotTLS
			}
			for !list.empty() {
				nt, ok1 := list.u8()
				name, ok2 := list.vec(2)
				if !ok1 || !ok2 {
					return "", nil, errNotTLS
				}
				if nt == 0 && sni == "" {
					sni = string(name)
				}
			}
		case 16: // application_layer_protocol_negotiation
			list, ok := data.vec(2)
			if !ok {
				return "", nil, errNotTLS
			}
			for !list.empty() {
				p, ok := list.vec(1)
				if !ok {
					return "", nil, errNotTLS
				}
				alpn = append(alpn, string(p))
			}
		}
	}
	return sni, alpn, nil
}

type reader []byte

func (r *reader) empty() bool { return len(*r) == 0 }

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8() (byte, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

// vec reads a vector with an lenBytes-byte length prefix.
func (r *reader) vec(lenBytes int) (reader, bool) {
	var n int
	switch lenBytes {
	case 1:
		b, ok := r.u8()
		if !ok {
			return nil, false
		}
		n = int(b)
	case 2:
		v, ok := r.u16()
		if !ok {
			return nil, false
		}
		n = v
	}
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return reader(v), true
}

func (r *reader) skipVec(lenBytes int) bool {
	_, ok := r.vec(lenBytes)
	return ok
}
