package hotrestart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeParent hands over its listeners and records the drain.
type fakeParent struct {
	socks []Socket
	mu    sync.Mutex
	drain []Drain
}

func (p *fakeParent) Sockets() []Socket { return p.socks }

func (p *fakeParent) StopAccepting(d Drain) {
	p.mu.Lock()
	p.drain = append(p.drain, d)
	p.mu.Unlock()
	for _, s := range p.socks {
		s.Listener.Close()
	}
}

// uniqueBase keeps parallel runs of this test apart in one namespace.
func uniqueBase() int { return int(time.Now().UnixNano()%1_000_000) + 1000 }

// TestHandOver: the child gets the parent's listening sockets (the same
// kernel sockets: a connection queued before the parent closed its copy
// is accepted by the child), and the drain request reaches the parent
// with the child's timings.
func TestHandOver(t *testing.T) {
	base := uniqueBase()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	p := &fakeParent{socks: []Socket{{Address: "0.0.0.0:15001", Listener: ln}}}
	srv, err := Listen(Options{BaseID: base}, p, "v-parent", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := Listen(Options{BaseID: base}, p, "v", nil); err == nil {
		t.Fatal("a second process of the same base id and epoch could listen; want an error")
	}

	ch, err := Connect(context.Background(), Options{BaseID: base, Epoch: 1, DrainTime: 3 * time.Second, ParentShutdownTime: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	got, err := ch.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	if ch.ParentVersion() != "v-parent" {
		t.Errorf("parent version: got %q, want v-parent", ch.ParentVersion())
	}
	cl := got["0.0.0.0:15001"]
	if len(got) != 1 || cl == nil {
		t.Fatalf("got listeners %v, want the one for 0.0.0.0:15001", got)
	}
	defer cl.Close()
	if cl.Addr().String() != addr {
		t.Errorf("inherited listener is on %s, want the parent's %s", cl.Addr(), addr)
	}

	// Queued while both hold the socket, accepted by the child after the
	// parent let go.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := ch.Drain(); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	d := p.drain
	p.mu.Unlock()
	if len(d) != 1 || d[0].ChildEpoch != 1 || d[0].DrainTime != 3*time.Second || d[0].ParentShutdownTime != 4*time.Second {
		t.Errorf("parent's drain requests: got %+v, want one from epoch 1 with 3s/4s", d)
	}
	fmt.Fprint(c, "hi")
	ac, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	ac.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(ac, b); err != nil || string(b) != "hi" {
		t.Fatalf("child read %q, %v; want hi", b, err)
	}

	// A second successor after the handover is refused.
	ch2, err := Connect(context.Background(), Options{BaseID: base, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ch2.Close()
	if _, err := ch2.Listeners(); err == nil {
		t.Error("a second successor got the listeners after the handover; want an error")
	}

	// The child sees the parent go.
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ch.WaitParentExit(ctx); err != nil {
		t.Errorf("WaitParentExit: %v", err)
	}
}

func TestConnectWithoutParent(t *testing.T) {
	_, err := Connect(context.Background(), Options{BaseID: uniqueBase(), Epoch: 3})
	if !errors.Is(err, ErrNoParent) {
		t.Fatalf("got %v, want ErrNoParent", err)
	}
}
