package httpconn

import "sync/atomic"

// maxOutboundControlFrames is Envoy's http2_protocol_options
// max_outbound_control_frames default: the PING and SETTINGS
// acknowledgements a client may leave unread before the proxy closes the
// connection.
const maxOutboundControlFrames = 1000

// HTTP/2 frame types and flags the flood guard follows (RFC 9113 6).
const (
	frameSettings = 0x4
	framePing     = 0x6
	flagAck       = 0x1
)

// frameScan follows the frame boundaries of one direction of an HTTP/2
// byte stream, looking only at the 9-byte frame headers.
type frameScan struct {
	hdr  [9]byte
	n    int // header bytes collected
	skip int // bytes to pass over: the rest of a payload, or the preface
}

// next scans p up to the end of the next frame header and returns its
// type and flags and the bytes after it; ok is false when p ended first.
func (s *frameScan) next(p []byte) (typ, flags byte, rest []byte, ok bool) {
	for len(p) > 0 {
		if s.skip > 0 {
			k := min(s.skip, len(p))
			s.skip -= k
			p = p[k:]
			continue
		}
		k := copy(s.hdr[s.n:], p)
		s.n += k
		p = p[k:]
		if s.n == len(s.hdr) {
			s.n = 0
			s.skip = int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
			return s.hdr[3], s.hdr[4], p, true
		}
	}
	return 0, 0, nil, false
}

// controlFlood counts the acknowledgements a connection owes its client:
// SETTINGS and PING frames read, less the acknowledgements written. The
// server library acknowledges every PING and, for several SETTINGS frames,
// one SETTINGS ACK covers all of them.
type controlFlood struct {
	in, out         frameScan
	settings, pings atomic.Int64
}

func newControlFlood() controlFlood {
	return controlFlood{in: frameScan{skip: len(h2Preface)}}
}

// read notes frames read from the client and reports whether the owed
// acknowledgements passed the bound.
func (f *controlFlood) read(p []byte) bool {
	for {
		typ, flags, rest, ok := f.in.next(p)
		if !ok {
			break
		}
		p = rest
		if flags&flagAck != 0 {
			continue
		}
		switch typ {
		case frameSettings:
			f.settings.Add(1)
		case framePing:
			f.pings.Add(1)
		}
	}
	return f.settings.Load()+f.pings.Load() > maxOutboundControlFrames
}

// wrote notes frames the connection wrote to the client.
func (f *controlFlood) wrote(p []byte) {
	for {
		typ, flags, rest, ok := f.out.next(p)
		if !ok {
			return
		}
		p = rest
		if flags&flagAck == 0 {
			continue
		}
		switch typ {
		case frameSettings:
			f.settings.Store(0)
		case framePing:
			f.pings.Add(-1)
		}
	}
}
