package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// ErrBodyTooLarge is returned by Buffer when a body exceeds its limit.
var ErrBodyTooLarge = errors.New("http1: body exceeds buffer limit")

// Body reads one message body from a connection's reader: a fixed length,
// chunked (decoded; trailers collected), or until EOF. Reset it for each
// message; the zero value reads nothing.
type Body struct {
	br        *bufio.Reader
	remaining int64 // bytes left in fixed body or current chunk
	chunked   bool
	untilEOF  bool
	done      bool
	// cont, when set, gets "100 Continue" before the first read.
	cont *bufio.Writer
	// Trailers holds the chunked trailer fields after EOF was returned.
	Trailers Headers
	tbuf     head
}

// Reset prepares b to read a body of length n (-1 with chunked false means
// "until EOF"; 0 is empty).
func (b *Body) Reset(br *bufio.Reader, n int64, chunked bool) {
	b.br = br
	b.chunked = chunked
	b.untilEOF = !chunked && n < 0
	b.remaining = 0
	if n > 0 && !chunked {
		b.remaining = n
	}
	b.done = !chunked && !b.untilEOF && n <= 0
	b.cont = nil
	b.Trailers = b.Trailers[:0]
}

// ExpectContinue makes the first Read write "HTTP/1.1 100 Continue" to w
// and flush it, as net/http does for Expect: 100-continue: a request
// answered without reading its body is never asked for it.
func (b *Body) ExpectContinue(w *bufio.Writer) {
	if !b.done {
		b.cont = w
	}
}

// SendContinue writes a pending "100 Continue" now rather than on the
// first Read, for a body that another goroutine will read.
func (b *Body) SendContinue() error {
	if b.cont == nil {
		return nil
	}
	w := b.cont
	b.cont = nil
	w.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return w.Flush()
}

// ContinuePending reports whether the peer still waits for "100 Continue"
// before sending the body (nothing was read yet).
func (b *Body) ContinuePending() bool { return b.cont != nil && !b.done }

// Remaining returns the bytes left of a body of known length; known is
// false for chunked and until-EOF bodies.
func (b *Body) Remaining() (n int64, known bool) {
	if b.done {
		return 0, true
	}
	if b.chunked || b.untilEOF {
		return 0, false
	}
	return b.remaining, true
}

// ForRequest resets b for r's body.
func (b *Body) ForRequest(br *bufio.Reader, r *Request) {
	n := r.ContentLength
	if n < 0 && !r.Chunked {
		n = 0 // a request without framing has no body
	}
	b.Reset(br, n, r.Chunked)
}

// ForResponse resets b for r's body, given whether the request was HEAD.
func (b *Body) ForResponse(br *bufio.Reader, r *Response, headReq bool) {
	if !r.BodyAllowed(headReq) {
		b.Reset(br, 0, false)
		return
	}
	b.Reset(br, r.ContentLength, r.Chunked)
}

// Done reports whether the whole body has been read.
func (b *Body) Done() bool { return b.done }

// UntilEOF reports whether the body is delimited by connection close.
func (b *Body) UntilEOF() bool { return b.untilEOF }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := b.SendContinue(); err != nil {
		return 0, err
	}
	if b.untilEOF {
		n, err := b.br.Read(p)
		if err == io.EOF {
			b.done = true
		}
		return n, err
	}
	if b.chunked && b.remaining == 0 {
		if err := b.nextChunk(); err != nil {
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		if b.chunked {
			if err2 := b.chunkEnd(); err2 != nil && err == nil {
				err = err2
			}
		} else {
			b.done = true
			if err == nil {
				err = io.EOF
			}
		}
	}
	if err == io.EOF && !b.done {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *Body) chunkEnd() error {
	c1, err := b.br.ReadByte()
	if err != nil {
		return eofUnexpected(err)
	}
	if c1 == '\r' {
		if c1, err = b.br.ReadByte(); err != nil {
			return eofUnexpected(err)
		}
	}
	if c1 != '\n' {
		return fmt.Errorf("%w: chunk not followed by CRLF", ErrMalformed)
	}
	return nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (b *Body) nextChunk() error {
	line, err := b.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return fmt.Errorf("%w: chunk size line too long", ErrMalformed)
		}
		return eofUnexpected(err)
	}
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto sizeDone
		}
		if digits >= 15 {
			return fmt.Errorf("%w: chunk size too large", ErrMalformed)
		}
		n = n<<4 | int64(d)
		digits++
	}
sizeDone:
	if digits == 0 {
		return fmt.Errorf("%w: chunk size", ErrMalformed)
	}
	if n == 0 {
		b.tbuf.reset()
		if err := b.tbuf.readFields(b.br); err != nil {
			return err
		}
		b.Trailers = append(b.Trailers[:0], b.tbuf.Headers...)
		b.done = true
		return nil
	}
	b.remaining = n
	return nil
}

// Discard reads and drops the rest of the body, up to limit bytes of
// payload (chunk framing is not counted); it reports whether the body
// ended, so that the connection can carry the next message. A body of
// known length longer than limit is not read at all. It never sends a
// pending "100 Continue": a peer still waiting for one has sent nothing.
func (b *Body) Discard(limit int64) bool {
	if b.ContinuePending() {
		return false
	}
	if n, known := b.Remaining(); known && n > limit {
		return false
	}
	if !b.chunked && !b.untilEOF {
		n, err := b.br.Discard(int(b.remaining))
		b.remaining -= int64(n)
		b.done = b.remaining == 0
		return err == nil && b.done
	}
	var scratch [512]byte
	for !b.done && limit > 0 {
		p := scratch[:]
		if int64(len(p)) > limit {
			p = p[:limit]
		}
		n, err := b.Read(p)
		limit -= int64(n)
		if err != nil {
			return err == io.EOF && b.done
		}
	}
	if b.chunked && !b.done && b.remaining == 0 {
		// The payload fits the limit exactly: read the last chunk and the
		// trailers.
		if err := b.nextChunk(); err != nil {
			return false
		}
	}
	return b.done
}

// ChunkedWriter encodes a chunked body onto w.
type ChunkedWriter struct {
	W   *bufio.Writer
	hex [20]byte
}

// Write writes p as one chunk.
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h := appendHex(c.hex[:0], uint64(len(p)))
	h = append(h, '\r', '\n')
	if _, err := c.W.Write(h); err != nil {
		return 0, err
	}
	n, err := c.W.Write(p)
	if err != nil {
		return n, err
	}
	_, err = c.W.WriteString("\r\n")
	return n, err
}

// Close writes the last chunk with optional trailer fields.
func (c *ChunkedWriter) Close(trailers Headers) error {
	c.W.WriteString("0\r\n")
	for _, t := range trailers {
		writeField(c.W, t.Name, t.Value)
	}
	_, err := c.W.WriteString("\r\n")
	return err
}

func appendHex(dst []byte, n uint64) []byte {
	const digits = "0123456789abcdef"
	if n == 0 {
		return append(dst, '0')
	}
	var tmp [16]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = digits[n&0xf]
		n >>= 4
	}
	return append(dst, tmp[i:]...)
}

func writeField(w *bufio.Writer, name, value []byte) {
	w.Write(name)
	w.WriteString(": ")
	w.Write(value)
	w.WriteString("\r\n")
}

// WriteField writes one "name: value" line.
func WriteField(w *bufio.Writer, name, value []byte) { writeField(w, name, value) }

// WriteFieldS writes one "name: value" line with a constant name.
func WriteFieldS(w *bufio.Writer, name string, value []byte) {
	w.WriteString(name)
	w.WriteString(": ")
	w.Write(value)
	w.WriteString("\r\n")
}

// WriteFieldString writes one "name: value" line from strings.
func WriteFieldString(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteString(": ")
	w.WriteString(value)
	w.WriteString("\r\n")
}

// WriteStatusLine writes "HTTP/1.1 code reason\r\n".
func WriteStatusLine(w *bufio.Writer, code int, reason []byte) {
	w.WriteString("HTTP/1.1 ")
	w.Write(AppendInt(w.AvailableBuffer(), int64(code)))
	w.WriteByte(' ')
	if len(reason) == 0 {
		w.WriteString(StatusText(code))
	} else {
		w.Write(reason)
	}
	w.WriteString("\r\n")
}
