package pool

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is one upstream HTTP/1.1 connection with its buffers. One upstream
// attempt at a time owns it: from the cluster's Conn until Endpoint.Put or
// Close.
type Conn struct {
	net.Conn
	BR *bufio.Reader
	BW *bufio.Writer
	// Reused is set when the connection came from the host's idle list.
	Reused bool
	// Requests counts the exchanges made on this connection.
	Requests int

	born    time.Time
	idleAt  time.Time
	rc      syscall.RawConn
	peek    func(fd uintptr) bool
	peekOK  bool
	onClose func()
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// NewConn wraps a freshly dialled connection. onClose, when set, runs once
// when the connection is closed (the cluster frees its connection slot).
func NewConn(nc net.Conn, now time.Time, onClose func()) *Conn {
	br := readers.Get().(*bufio.Reader)
	br.Reset(nc)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	c := &Conn{Conn: nc, BR: br, BW: bw, born: now, onClose: onClose}
	// A TLS connection may hold post-handshake records (session tickets)
	// on the socket: only plaintext sockets are peeked for a remote close.
	if _, isTLS := nc.(*tls.Conn); !isTLS {
		if sc, ok := nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				c.rc = rc
				c.peek = c.peekFD
			}
		}
	}
	return c
}

// Close closes the connection, recycles its buffers and frees its slot.
// It is safe to call more than once.
func (c *Conn) Close() error {
	if c.BR == nil {
		return nil
	}
	err := c.Conn.Close()
	c.BR.Reset(nil)
	readers.Put(c.BR)
	c.BR = nil
	c.BW.Reset(nil)
	writers.Put(c.BW)
	c.BW = nil
	if c.onClose != nil {
		c.onClose()
	}
	return err
}

// aliveCheckAfter is how long a connection must have been idle before it
// is peeked for a remote close; a busier connection is reused as is (a
// request that finds it closed is retried once on a fresh connection).
const aliveCheckAfter = 500 * time.Millisecond

// alive peeks at the socket without blocking: a readable EOF, an error or
// unexpected data means the peer closed or broke the connection.
func (c *Conn) alive() bool {
	if c.rc == nil {
		return true
	}
	c.peekOK = false
	if err := c.rc.Read(c.peek); err != nil {
		return false
	}
	return c.peekOK
}

func (c *Conn) peekFD(fd uintptr) bool {
	var b [1]byte
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	c.peekOK = errno == unix.EAGAIN || errno == unix.EWOULDBLOCK
	return true
}
