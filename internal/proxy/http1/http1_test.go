package http1

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantErr    bool
		method     string
		target     string
		host       string
		cl         int64
		chunked    bool
		close      bool
		upgrade    bool
		expect100  bool
		body       string
		numHeaders int
	}{
		{name: "get keep-alive", in: "GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\nUser: jesse\r\n\r\n", method: "GET", target: "/a?b=1", host: "x.example", cl: -1, numHeaders: 2},
		{name: "post content-length", in: "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", method: "POST", target: "/echo", host: "h", cl: 5, body: "hello", numHeaders: 2},
		{name: "chunked with trailer", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n", method: "POST", target: "/", host: "h", cl: -1, chunked: true, body: "hello world", numHeaders: 2},
		{name: "content-length with chunked (smuggling)", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", wantErr: true},
		{name: "same content-length twice", in: "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", method: "POST", target: "/", cl: 2, body: "ok", numHeaders: 2},
		{name: "content-length list", in: "POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nok", wantErr: true},
		{name: "http/1.0 closes", in: "GET / HTTP/1.0\r\n\r\n", method: "GET", target: "/", cl: -1, close: true},
		{name: "connection close", in: "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", method: "GET", target: "/", cl: -1, close: true, numHeaders: 1},
		{name: "websocket upgrade", in: "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", target: "/ws", cl: -1, upgrade: true, numHeaders: 2},
		{name: "expect continue", in: "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", method: "PUT", target: "/", cl: 2, expect100: true, body: "ok", numHeaders: 2},
		{name: "leading empty line ignored", in: "\r\nGET / HTTP/1.1\r\n\r\n", method: "GET", target: "/", cl: -1},
		{name: "bad version", in: "GET / HTTP/2.0\r\n\r\n", wantErr: true},
		{name: "no colon", in: "GET / HTTP/1.1\r\nBad\r\n\r\n", wantErr: true},
		{name: "space in name", in: "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", wantErr: true},
		{name: "conflicting content-length", in: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", wantErr: true},
		{name: "negative content-length", in: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", wantErr: true},
		{name: "gzip transfer-encoding", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: true},
		{name: "folded header", in: "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", wantErr: true},
		{name: "truncated head", in: "GET / HTTP/1.1\r\nHost: x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 64)
			var r Request
			err := ReadRequest(br, &r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if string(r.Method) != tt.method || string(r.Target) != tt.target || string(r.Host) != tt.host {
				t.Errorf("got %q %q host %q, want %q %q host %q", r.Method, r.Target, r.Host, tt.method, tt.target, tt.host)
			}
			if r.ContentLength != tt.cl || r.Chunked != tt.chunked || r.Close != tt.close || r.Upgrade != tt.upgrade || r.Expect100 != tt.expect100 {
				t.Errorf("got cl=%d chunked=%v close=%v upgrade=%v expect=%v, want %d %v %v %v %v", r.ContentLength, r.Chunked, r.Close, r.Upgrade, r.Expect100, tt.cl, tt.chunked, tt.close, tt.upgrade, tt.expect100)
			}
			if len(r.Headers) != tt.numHeaders {
				t.Errorf("got %d headers, want %d", len(r.Headers), tt.numHeaders)
			}
			var b Body
			b.ForRequest(br, &r)
			got, err := io.ReadAll(&b)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if string(got) != tt.body {
				t.Errorf("got body %q, want %q", got, tt.body)
			}
		})
	}
}

func TestPipelinedRequestsReuse(t *testing.T) {
	in := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyzGET /3 HTTP/1.1\r\nHost: c\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var r Request
	var b Body
	var got []string
	for {
		if err := ReadRequest(br, &r); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		b.ForRequest(br, &r)
		body, _ := io.ReadAll(&b)
		got = append(got, string(r.Target)+":"+string(r.Host)+":"+string(body))
	}
	want := "/1:a:,/2:b:xyz,/3:c:"
	if strings.Join(got, ",") != want {
		t.Errorf("got %s, want %s", strings.Join(got, ","), want)
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		head    bool
		status  int
		reason  string
		body    string
		wantErr bool
	}{
		{name: "ok with length", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", status: 200, reason: "OK", body: "hi"},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", status: 204},
		{name: "until eof", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, reason: "OK", body: "all of it"},
		{name: "head has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head: true, status: 200, reason: "OK"},
		{name: "chunked", in: "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", status: 503, reason: "Service Unavailable", body: "abc"},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			var r Response
			err := ReadResponse(br, &r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if r.Status != tt.status || string(r.Reason) != tt.reason {
				t.Errorf("got %d %q, want %d %q", r.Status, r.Reason, tt.status, tt.reason)
			}
			var b Body
			b.ForResponse(br, &r, tt.head)
			got, err := io.ReadAll(&b)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.body {
				t.Errorf("got body %q, want %q", got, tt.body)
			}
		})
	}
}

func TestChunkedRoundTrip(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	cw := ChunkedWriter{W: bw}
	cw.Write([]byte("hello "))
	cw.Write([]byte(strings.Repeat("x", 300)))
	cw.Close(Headers{{Name: []byte("grpc-status"), Value: []byte("0")}})
	bw.Flush()
	var b Body
	b.Reset(bufio.NewReader(&out), -1, true)
	got, err := io.ReadAll(&b)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello " + strings.Repeat("x", 300); string(got) != want {
		t.Errorf("got %d bytes, want %d", len(got), len(want))
	}
	if v, _ := b.Trailers.Get("grpc-status"); string(v) != "0" {
		t.Errorf("got trailer %q, want 0", v)
	}
}

func TestHeadersSetDel(t *testing.T) {
	h := Headers{{Name: []byte("A"), Value: []byte("1")}, {Name: []byte("b"), Value: []byte("2")}, {Name: []byte("a"), Value: []byte("3")}}
	h.Set("a", []byte("9"))
	if len(h) != 2 || string(h[0].Value) != "9" {
		t.Fatalf("got %q, want a=9 and b=2", h)
	}
	h.Del("b")
	if len(h) != 1 {
		t.Fatalf("got %d, want 1", len(h))
	}
	h.Set("c", []byte("x"))
	if v, _ := h.Get("c"); string(v) != "x" {
		t.Errorf("got %q, want x", v)
	}
}

func TestReadRequestAllocs(t *testing.T) {
	raw := []byte("POST /echo HTTP/1.1\r\nHost: bill-service:9999\r\nUser-Agent: fortio\r\nContent-Length: 4\r\nX-Request-Id: 1\r\n\r\nbody")
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	var r Request
	var b Body
	var buf [64]byte
	run := func() {
		rd.Reset(raw)
		br.Reset(rd)
		if err := ReadRequest(br, &r); err != nil {
			t.Fatal(err)
		}
		b.ForRequest(br, &r)
		for {
			if _, err := b.Read(buf[:]); err != nil {
				break
			}
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("got %v allocs per request, want 0", n)
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 32)
		var r Request
		for i := 0; i < 4; i++ {
			if err := ReadRequest(br, &r); err != nil {
				return
			}
			if r.Chunked && r.ContentLength >= 0 {
				t.Fatalf("chunked with content-length %d", r.ContentLength)
			}
			var b Body
			b.ForRequest(br, &r)
			n, err := io.Copy(io.Discard, &b)
			if err == nil && !r.Chunked && n != r.ContentLength && r.ContentLength >= 0 {
				t.Fatalf("got %d body bytes, want %d", n, r.ContentLength)
			}
			if err != nil {
				return
			}
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 32)
		var r Response
		if err := ReadResponse(br, &r); err != nil {
			return
		}
		if r.Status < 100 || r.Status > 999 {
			t.Fatalf("status %d out of range", r.Status)
		}
		var b Body
		b.ForResponse(br, &r, false)
		io.Copy(io.Discard, &b)
	})
}

// TestBodyDiscard drops a request body left unread and checks that the
// next request is read from the right place, or that Discard gives up.
func TestBodyDiscard(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
	tests := []struct {
		name  string
		in    string
		limit int64
		want  bool // the body ended and the next request follows
	}{
		{name: "content-length", in: "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + next, limit: 64, want: true},
		{name: "content-length at the limit", in: "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + next, limit: 5, want: true},
		{name: "content-length above the limit", in: "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + next, limit: 4},
		{name: "content-length truncated", in: "POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nhello", limit: 64},
		{name: "chunked with trailer", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n" + next, limit: 64, want: true},
		{name: "chunked at the limit", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + next, limit: 11, want: true},
		{name: "chunked above the limit", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + next, limit: 10},
		{name: "chunked malformed", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", limit: 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var r Request
			if err := ReadRequest(br, &r); err != nil {
				t.Fatal(err)
			}
			var b Body
			b.ForRequest(br, &r)
			if got := b.Discard(tt.limit); got != tt.want {
				t.Fatalf("got Discard %v, want %v", got, tt.want)
			}
			if !tt.want {
				return
			}
			if err := ReadRequest(br, &r); err != nil || string(r.Target) != "/next" {
				t.Fatalf("next request: got %q, %v; want /next", r.Target, err)
			}
		})
	}
}

// TestBodyExpectContinue sends 100 Continue on the first read only, and
// never from Discard.
func TestBodyExpectContinue(t *testing.T) {
	in := "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
	var r Request
	br := bufio.NewReader(strings.NewReader(in))
	if err := ReadRequest(br, &r); err != nil || !r.Expect100 {
		t.Fatalf("got expect %v, %v; want 100-continue", r.Expect100, err)
	}
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	var b Body
	b.ForRequest(br, &r)
	b.ExpectContinue(bw)
	if !b.ContinuePending() {
		t.Fatal("got no pending 100 Continue, want one")
	}
	if b.Discard(64) {
		t.Fatal("Discard of a body held back for 100 Continue: got true, want false")
	}
	if out.Len() != 0 {
		t.Fatalf("Discard wrote %q, want nothing", out.String())
	}
	got, err := io.ReadAll(&b)
	if err != nil || string(got) != "ok" {
		t.Fatalf("got body %q, %v; want ok", got, err)
	}
	if want := "HTTP/1.1 100 Continue\r\n\r\n"; out.String() != want {
		t.Fatalf("wrote %q, want %q once", out.String(), want)
	}
	if b.ContinuePending() {
		t.Fatal("100 Continue still pending after the body was read")
	}
}

// FuzzDiscardBody checks that dropping a body with Discard leaves the
// reader where reading it would: the request after it parses the same.
// This is how a request answered without its body (a local reply) hands
// the connection to the next request.
func FuzzDiscardBody(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n"), uint16(64))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\nGET /next HTTP/1.1\r\n\r\n"), uint16(3))
	f.Add([]byte("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n"), uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		var read, dropped Request
		brRead := bufio.NewReaderSize(bytes.NewReader(data), 16)
		brDrop := bufio.NewReaderSize(bytes.NewReader(data), 16)
		if err := ReadRequest(brRead, &read); err != nil {
			return
		}
		if err := ReadRequest(brDrop, &dropped); err != nil {
			t.Fatalf("same head parsed once, then failed: %v", err)
		}
		var b, d Body
		b.ForRequest(brRead, &read)
		n, err := io.Copy(io.Discard, &b)
		d.ForRequest(brDrop, &dropped)
		if !d.Discard(int64(limit)) {
			return
		}
		if err != nil {
			t.Fatalf("Discard ended a body that reading fails on: %v", err)
		}
		if n > int64(limit) {
			t.Fatalf("Discard dropped %d payload bytes, limit %d", n, limit)
		}
		errRead := ReadRequest(brRead, &read)
		errDrop := ReadRequest(brDrop, &dropped)
		if (errRead == nil) != (errDrop == nil) || string(read.Target) != string(dropped.Target) || string(read.Method) != string(dropped.Method) {
			t.Fatalf("next request after reading: %q %q %v; after Discard: %q %q %v", read.Method, read.Target, errRead, dropped.Method, dropped.Target, errDrop)
		}
	})
}
