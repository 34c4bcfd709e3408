package proxy

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// goawayServer speaks h2c: each connection answers its first stream, then
// meets the next one with GOAWAY (last stream: the first) and closes, as a
// server draining a connection at its max age does.
func goawayServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				fr.WriteSettings()
				var first uint32
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						if first != 0 {
							fr.WriteGoAway(first, http2.ErrCodeNo, nil)
							return
						}
						first = f.StreamID
						var hb bytes.Buffer
						hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
						fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
						fr.WriteData(f.StreamID, true, []byte("ok"))
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

// TestH2UpstreamGoAwayRetriedOnFreshConnection: a request that meets an
// upstream HTTP/2 connection the server is shutting down (GOAWAY without
// taking the stream) goes out again on a fresh connection, without a
// route retry policy and without the client seeing an error.
func TestH2UpstreamGoAwayRetriedOnFreshConnection(t *testing.T) {
	be, conns := goawayServer(t)
	r := startProxy(t, []testListener{{Name: "out", HCM: hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), "")}}, []testCluster{{Name: "be", Addrs: []string{be}, HTTP2: true}}, nil)
	c := client()
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://" + r.addr(t, "out") + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: got %d %q, want 200 ok", i, resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("got %d upstream connections for 3 requests, want a fresh one after each GOAWAY", n)
	}
}
