package httpconn

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
)

// FuzzFrameScan: however the byte stream is cut into reads, the scanner
// sees the frame headers the framer wrote, in order.
func FuzzFrameScan(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint16(7))
	f.Add([]byte{}, uint16(1))
	f.Fuzz(func(t *testing.T, payload []byte, cut uint16) {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		fr.WriteSettings()
		fr.WritePing(false, [8]byte{1})
		fr.WriteData(1, false, payload)
		fr.WriteSettingsAck()
		fr.WritePing(true, [8]byte{2})
		fr.WriteRawFrame(0x20, 0xff, 3, payload)
		want := []byte{frameSettings, 0, framePing, 0, 0x0, 0, frameSettings, flagAck, framePing, flagAck, 0x20, 0xff}
		step := int(cut%64) + 1
		var s frameScan
		var got []byte
		b := buf.Bytes()
		for len(b) > 0 {
			n := min(step, len(b))
			p := b[:n]
			b = b[n:]
			for {
				typ, flags, rest, ok := s.next(p)
				if !ok {
					break
				}
				got = append(got, typ, flags)
				p = rest
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("reads of %d bytes: got headers %v, want %v", step, got, want)
		}
	})
}

// TestControlFlood: PING and SETTINGS owed past the bound trip it; acks
// written pay them back (one SETTINGS ACK for all SETTINGS read).
func TestControlFlood(t *testing.T) {
	var in, out bytes.Buffer
	in.WriteString(h2Preface)
	fin, fout := http2.NewFramer(&in, nil), http2.NewFramer(&out, nil)
	for range maxOutboundControlFrames / 2 {
		fin.WriteSettings()
		fin.WritePing(false, [8]byte{})
	}
	fl := newControlFlood()
	if fl.read(in.Bytes()) {
		t.Fatalf("got the bound tripped at %d owed acks, want it at more than %d", maxOutboundControlFrames, maxOutboundControlFrames)
	}
	fout.WriteSettingsAck()
	fout.WritePing(true, [8]byte{})
	fl.wrote(out.Bytes())
	if got := fl.settings.Load() + fl.pings.Load(); got != maxOutboundControlFrames/2-1 {
		t.Errorf("after one SETTINGS ACK and one PING ack: got %d owed, want %d", got, maxOutboundControlFrames/2-1)
	}
	in.Reset()
	for range maxOutboundControlFrames/2 + 2 {
		fin.WritePing(false, [8]byte{})
	}
	if !fl.read(in.Bytes()) {
		t.Errorf("got %d owed acks accepted, want the bound tripped", fl.settings.Load()+fl.pings.Load())
	}
}
