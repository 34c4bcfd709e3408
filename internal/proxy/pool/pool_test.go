package pool

import (
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

func TestReuseAndStaleDetection(t *testing.T) {
	s := newServer(t)
	now := time.Unix(1000, 0)
	p := New(Options{Now: func() time.Time { return now }})
	addr := s.ln.Addr().String()

	c1, err := p.Get(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Reused {
		t.Error("got a reused connection from an empty pool")
	}
	p.Put(c1)
	c2, err := p.Get(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c1 || !c2.Reused {
		t.Fatalf("got a different connection, want the idle one reused")
	}
	p.Put(c2)
	if n := p.IdleCount(addr); n != 1 {
		t.Fatalf("got %d idle, want 1", n)
	}

	// The server closes the idle connection; after a while idle, Get
	// notices and dials anew.
	for i := 0; i < 100 && len(s.accepted()) == 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	s.closeAll()
	time.Sleep(20 * time.Millisecond)
	now = now.Add(2 * aliveCheckAfter)
	c3, err := p.Get(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c3 == c1 || c3.Reused {
		t.Errorf("got the closed idle connection back, want a fresh one")
	}
	p.Discard(c3)
}

func TestIdleTimeoutAndLimit(t *testing.T) {
	s := newServer(t)
	now := time.Unix(1000, 0)
	p := New(Options{Now: func() time.Time { return now }, MaxIdlePerHost: 2, IdleTimeout: time.Minute})
	addr := s.ln.Addr().String()
	var cs []*Conn
	for i := 0; i < 3; i++ {
		c, err := p.Dial(addr, "", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		p.Put(c)
	}
	if n := p.IdleCount(addr); n != 2 {
		t.Errorf("got %d idle, want the limit 2", n)
	}
	now = now.Add(2 * time.Minute)
	c, err := p.Get(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reused {
		t.Error("got a connection idle past the idle timeout, want a fresh one")
	}
}

func TestBindSource(t *testing.T) {
	s := newServer(t)
	p := New(Options{})
	c, err := p.Get(s.ln.Addr().String(), "127.0.0.6", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Discard(c)
	if ip := c.LocalAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.6" {
		t.Errorf("got source %s, want 127.0.0.6 (inbound passthrough)", ip)
	}
	p.Put(c)
	if n := p.IdleCount(s.ln.Addr().String()); n != 0 {
		t.Errorf("got %d idle under the plain address, want bound connections pooled apart", n)
	}
}
