package pool

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// server accepts connections and records their remote addresses; close
// makes it close every accepted connection.
type server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newServer(t *testing.T) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.closeAll() })
	return s
}

func (s *server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *server) accepted() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.conns...)
}

func dial(t *testing.T, d *Dialer, addr string, now time.Time, closed *int) *Conn {
	t.Helper()
	nc, err := d.DialContext(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return NewConn(nc, now, func() { *closed++ })
}

func TestReuseAndStaleDetection(t *testing.T) {
	s := newServer(t)
	now := time.Unix(1000, 0)
	addr := s.ln.Addr().String()
	var e Endpoint
	closed := 0
	if c := e.Take(now, time.Hour, 0); c != nil {
		t.Fatal("got a connection from an empty endpoint")
	}
	c1 := dial(t, &Dialer{Timeout: time.Second}, addr, now, &closed)
	e.Put(c1, now)
	c2 := e.Take(now, time.Hour, 0)
	if c2 != c1 || !c2.Reused {
		t.Fatalf("got a different connection, want the idle one reused")
	}
	e.Put(c2, now)
	if n := e.IdleCount(); n != 1 {
		t.Fatalf("got %d idle, want 1", n)
	}

	// The server closes the idle connection; after a while idle, Take
	// notices, closes it (freeing its slot) and finds nothing.
	for i := 0; i < 100 && len(s.accepted()) == 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	s.closeAll()
	time.Sleep(20 * time.Millisecond)
	if c := e.Take(now.Add(2*aliveCheckAfter), time.Hour, 0); c != nil {
		t.Errorf("got the closed idle connection back, want none")
	}
	if closed != 1 {
		t.Errorf("got %d close callbacks, want 1", closed)
	}
}

func TestIdleTimeoutMaxAgeAndClose(t *testing.T) {
	s := newServer(t)
	now := time.Unix(1000, 0)
	addr := s.ln.Addr().String()
	var e Endpoint
	closed := 0
	d := &Dialer{}
	e.Put(dial(t, d, addr, now, &closed), now)
	if c := e.Take(now.Add(2*time.Minute), time.Minute, 0); c != nil {
		t.Error("got a connection idle past the idle timeout, want none")
	}
	e.Put(dial(t, d, addr, now, &closed), now.Add(time.Hour))
	if c := e.Take(now.Add(time.Hour), 2*time.Hour, 30*time.Minute); c != nil {
		t.Error("got a connection older than max_connection_duration, want none")
	}
	e.Put(dial(t, d, addr, now, &closed), now)
	e.Close()
	if n := e.IdleCount(); n != 0 {
		t.Errorf("got %d idle after Close, want 0", n)
	}
	late := dial(t, d, addr, now, &closed)
	e.Put(late, now)
	if n := e.IdleCount(); n != 0 {
		t.Errorf("a closed endpoint kept a connection handed back later")
	}
	if closed != 4 {
		t.Errorf("got %d connections closed, want all 4", closed)
	}
}

func TestBindSource(t *testing.T) {
	s := newServer(t)
	d := &Dialer{Bind: "127.0.0.6", Timeout: time.Second}
	c, err := d.DialContext(context.Background(), s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ip := c.LocalAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.6" {
		t.Errorf("got source %s, want 127.0.0.6 (inbound passthrough)", ip)
	}
}
