package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// A listener opened in a namespace is reachable from inside it and not
// from the host, and the calling goroutine's namespace is unchanged.
func TestListenDialInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	ctx := context.Background()
	name := fmt.Sprintf("t6n-%d", os.Getpid())
	if err := Add(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(context.Background(), name) })
	if !Exists(name) {
		t.Fatalf("Exists(%q): got false after Add", name)
	}
	if got, _ := List("t6n-"); len(got) == 0 {
		t.Errorf("List: got none, want %s", name)
	}
	l, err := Listen(name, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("in-ns\n"))
			c.Close()
		}
	}()
	addr := l.Addr().String()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := Dial(dctx, name, "tcp4", addr)
	if err != nil {
		t.Fatalf("dial inside the namespace: %v", err)
	}
	buf := make([]byte, 6)
	n, _ := c.Read(buf)
	c.Close()
	if got := string(buf[:n]); got != "in-ns\n" {
		t.Errorf("got %q, want %q", got, "in-ns\n")
	}
	if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		// The host may have its own listener on that port by chance; only
		// a reply from ours would be wrong.
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		c.Close()
		if string(buf[:n]) == "in-ns\n" {
			t.Errorf("the namespace's listener answered from the host")
		}
	}
	if err := Do("no-such-ns-t6", func() error { return nil }); err == nil {
		t.Errorf("Do on a missing namespace: got nil error")
	}
	if err := Delete(ctx, name); err != nil || Exists(name) {
		t.Errorf("Delete: err %v, exists %v", err, Exists(name))
	}
	if err := Delete(ctx, name); err != nil {
		t.Errorf("Delete twice: got %v, want nil", err)
	}
}
