package httpconn

import (
	"encoding/binary"
	"testing"
)

// frame builds one gRPC length-prefixed message of n bytes.
func frame(n int) []byte {
	b := make([]byte, 5+n)
	binary.BigEndian.PutUint32(b[1:5], uint32(n))
	return b
}

func TestGRPCFramesCount(t *testing.T) {
	var stream []byte
	for _, n := range []int{0, 1, 10, 5, 70000, 0, 3} {
		stream = append(stream, frame(n)...)
	}
	tests := []struct {
		name  string
		chunk int
		data  []byte
		want  uint64
	}{
		{name: "whole stream at once", chunk: len(stream), data: stream, want: 7},
		{name: "one byte at a time", chunk: 1, data: stream, want: 7},
		{name: "prefix split across writes", chunk: 3, data: stream, want: 7},
		{name: "16 KiB pieces", chunk: 16 << 10, data: stream, want: 7},
		{name: "last message incomplete", chunk: 7, data: append(frame(2), frame(10)[:9]...), want: 1},
		{name: "prefix incomplete", chunk: 2, data: append(frame(2), 0, 0, 0), want: 1},
		{name: "empty", chunk: 1, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f grpcFrames
			for p := tt.data; len(p) > 0; {
				k := min(tt.chunk, len(p))
				f.feed(p[:k])
				p = p[k:]
			}
			if got := f.count(); got != tt.want {
				t.Errorf("got %d messages, want %d", got, tt.want)
			}
		})
	}
}

func TestGRPCFramesDoNotAllocate(t *testing.T) {
	var f grpcFrames
	msg := append(frame(100), frame(3)...)
	if n := testing.AllocsPerRun(1000, func() { f.feed(msg) }); n != 0 {
		t.Errorf("got %v allocations per feed, want 0", n)
	}
}

// FuzzGRPCFrames feeds arbitrary bytes (a peer's body) in two pieces and
// wants the same count as in one.
func FuzzGRPCFrames(f *testing.F) {
	f.Add(append(frame(3), frame(0)...), 4)
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 1}, 2)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		var whole, split grpcFrames
		whole.feed(data)
		split.feed(data[:cut])
		split.feed(data[cut:])
		if whole.count() != split.count() {
			t.Errorf("got %d messages split at %d, %d whole", split.count(), cut, whole.count())
		}
	})
}
