package httpconn

import (
	"encoding/binary"
	"sync/atomic"
)

// Istio's grpc_stats filter: a gRPC stream's messages, counted by their
// length prefixes as the bodies stream, for istio_request_messages_total
// and istio_response_messages_total.

// grpcMessages counts one gRPC stream's messages: requests as the body is
// read from downstream, responses as they are written downstream.
type grpcMessages struct {
	in  grpcBody
	out grpcSink
}

// grpcBody counts the messages of a request body as it is read.
type grpcBody struct {
	r interface {
		Read(p []byte) (int, error)
	}
	frames grpcFrames
}

func (b *grpcBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.frames.feed(p[:n])
	return n, err
}

// grpcSink counts the messages of a response body on its way downstream.
type grpcSink struct {
	sink
	frames grpcFrames
}

func (s *grpcSink) Write(p []byte) (int, error) {
	n, err := s.sink.Write(p)
	s.frames.feed(p[:n])
	return n, err
}

// grpcFrames counts gRPC length-prefixed messages (a flag byte and a
// 4-byte big-endian length, then the message) in a stream of bytes fed in
// pieces of any size. A message counts once all of it went by. feed calls
// must not run concurrently; count may run alongside them.
type grpcFrames struct {
	head  [5]byte
	headN int    // prefix bytes seen of the next message
	left  uint32 // bytes of the current message still to come
	inMsg bool
	n     atomic.Uint64
}

func (f *grpcFrames) feed(p []byte) {
	for len(p) > 0 {
		if f.inMsg {
			k := uint32(len(p))
			if k > f.left {
				k = f.left
			}
			f.left -= k
			p = p[k:]
			if f.left == 0 {
				f.inMsg = false
				f.n.Add(1)
			}
			continue
		}
		k := copy(f.head[f.headN:], p)
		f.headN += k
		p = p[k:]
		if f.headN < len(f.head) {
			return
		}
		f.headN = 0
		f.left = binary.BigEndian.Uint32(f.head[1:])
		if f.left == 0 {
			f.n.Add(1)
		} else {
			f.inMsg = true
		}
	}
}

// count returns the messages seen completely so far.
func (f *grpcFrames) count() uint64 { return f.n.Load() }
