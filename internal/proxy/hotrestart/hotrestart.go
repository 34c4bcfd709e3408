package hotrestart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options say which hot restart generation a proxy is. The zero value is
// epoch 0 of base id 0.
type Options struct {
	// BaseID separates the proxies of one network namespace (Envoy's
	// --base-id): processes hand over only within the same base id.
	BaseID int
	// Epoch is this process's generation (Envoy's --restart-epoch): 0 is a
	// fresh start; N takes over from the process of epoch N-1.
	Epoch int
	// DrainTime is how long the parent drains its connections gracefully
	// once the child took over (Envoy's --drain-time-s); what is still
	// open then is closed.
	DrainTime time.Duration
	// ParentShutdownTime is how long after the takeover the parent exits
	// at the latest (Envoy's --parent-shutdown-time-s).
	ParentShutdownTime time.Duration
}

// Istio's defaults for the sidecar (pilot-agent's drainDuration and
// parentShutdownDuration); Envoy's own are 600 s and 900 s.
const (
	DefaultDrainTime          = 45 * time.Second
	DefaultParentShutdownTime = 60 * time.Second
)

// SocketName is the abstract unix socket a process of this generation
// listens on for its successor.
func SocketName(baseID, epoch int) string {
	return fmt.Sprintf("@trellis-proxy.hotrestart.%d.%d", baseID, epoch)
}

// message is one request or reply. Requests: "listeners" (the reply is a
// header with Count, then Count messages each carrying one socket) and
// "drain" (the reply comes once the parent stopped accepting).
type message struct {
	Op      string `json:"op,omitempty"`
	Epoch   int    `json:"epoch,omitempty"`
	Version string `json:"version,omitempty"`
	Count   int    `json:"count,omitempty"`
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
	// DrainTimeMs and ParentShutdownTimeMs are the child's, which govern
	// the parent's drain as in Envoy.
	DrainTimeMs          int64 `json:"drain_time_ms,omitempty"`
	ParentShutdownTimeMs int64 `json:"parent_shutdown_time_ms,omitempty"`
}

const maxMessage = 64 << 10

// Socket is one listening socket a parent hands over, by the address its
// configuration binds (the key the child looks it up by).
type Socket struct {
	Address  string
	Listener net.Listener // a *net.TCPListener (anything with SyscallConn)
}

// Drain is what the child asks of its parent.
type Drain struct {
	ChildEpoch         int
	DrainTime          time.Duration
	ParentShutdownTime time.Duration
}

// Parent is the running proxy's side: what it hands over, and how it
// stops accepting and drains.
type Parent interface {
	// Sockets lists every listening socket the process holds.
	Sockets() []Socket
	// StopAccepting is called when the child asks to take over: the
	// parent closes its listening descriptors (the child's copies keep
	// the sockets open) and starts draining; it returns once no accept
	// of the parent can happen any more, and must exit later by itself.
	StopAccepting(d Drain)
}

// Server is a process's listening end for its successor.
type Server struct {
	ln      *net.UnixListener
	parent  Parent
	version string
	logf    func(format string, args ...any)

	mu       sync.Mutex
	drained  bool
	conns    map[*net.UnixConn]struct{}
	closed   bool
	serveEnd sync.WaitGroup
}

// Listen binds this generation's socket and serves successors until
// Close. A name already bound means another process of this base id
// runs in the network namespace.
func Listen(o Options, p Parent, version string, logf func(string, ...any)) (*Server, error) {
	name := SocketName(o.BaseID, o.Epoch)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: name, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("hot restart: listen on %s: %w (another trellis-proxy with --base-id %d and --restart-epoch %d runs in this network namespace; give each proxy its own --base-id)", name, err, o.BaseID, o.Epoch)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Server{ln: ln, parent: p, version: version, logf: logf, conns: map[*net.UnixConn]struct{}{}}
	s.serveEnd.Add(1)
	go s.accept()
	return s, nil
}

// Close stops listening and ends the connections to successors (a child
// waiting on ParentGone sees it).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.serveEnd.Wait()
	return err
}

func (s *Server) accept() {
	defer s.serveEnd.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		if err := samePeer(c); err != nil {
			s.logf("hot restart: refusing a successor: %v", err)
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.serveEnd.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c *net.UnixConn) {
	defer s.serveEnd.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, maxMessage)
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var m message
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			send(c, message{Error: "bad request: " + err.Error()}, -1)
			return
		}
		switch m.Op {
		case "listeners":
			s.mu.Lock()
			drained := s.drained
			s.mu.Unlock()
			if drained {
				send(c, message{Error: "this process already handed over to another successor"}, -1)
				return
			}
			socks := s.parent.Sockets()
			if err := send(c, message{Count: len(socks), Version: s.version}, -1); err != nil {
				return
			}
			for _, sk := range socks {
				if err := sendListener(c, sk); err != nil {
					s.logf("hot restart: passing %s to epoch %d: %v", sk.Address, m.Epoch, err)
					return
				}
			}
			s.logf("hot restart: passed %d listening sockets to epoch %d", len(socks), m.Epoch)
		case "drain":
			s.mu.Lock()
			first := !s.drained
			s.drained = true
			s.mu.Unlock()
			if first {
				s.parent.StopAccepting(Drain{ChildEpoch: m.Epoch,
					DrainTime:          time.Duration(m.DrainTimeMs) * time.Millisecond,
					ParentShutdownTime: time.Duration(m.ParentShutdownTimeMs) * time.Millisecond})
			}
			if err := send(c, message{Op: "drain"}, -1); err != nil {
				return
			}
		default:
			send(c, message{Error: fmt.Sprintf("unknown request %q", m.Op)}, -1)
			return
		}
	}
}

// send writes one message, with fd as SCM_RIGHTS when fd >= 0.
func send(c *net.UnixConn, m message, fd int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// sendListener passes a listening socket's descriptor; the kernel gives
// the receiver its own descriptor for the same socket.
func sendListener(c *net.UnixConn, sk Socket) error {
	sc, ok := sk.Listener.(syscall.Conn)
	if !ok {
		return fmt.Errorf("listener %T has no descriptor", sk.Listener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = send(c, message{Address: sk.Address}, int(fd)) }); err != nil {
		return err
	}
	return serr
}

// Child is a new process's connection to the generation before it.
type Child struct {
	o       Options
	c       *net.UnixConn
	buf     []byte
	version string
	mu      sync.Mutex // one request at a time
}

// ErrNoParent means no process of the previous epoch listens: the child
// starts like a fresh process.
var ErrNoParent = errors.New("no parent process")

// Connect reaches the process of epoch o.Epoch-1 (o.Epoch must be > 0).
func Connect(ctx context.Context, o Options) (*Child, error) {
	if o.Epoch <= 0 {
		return nil, fmt.Errorf("hot restart: epoch %d has no parent", o.Epoch)
	}
	name := SocketName(o.BaseID, o.Epoch-1)
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "unixpacket", name)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("hot restart: %s: %w", name, ErrNoParent)
		}
		return nil, fmt.Errorf("hot restart: connect to the parent at %s: %w", name, err)
	}
	return &Child{o: o, c: conn.(*net.UnixConn), buf: make([]byte, maxMessage)}, nil
}

// ParentVersion is the parent's build version (known after Listeners).
func (ch *Child) ParentVersion() string { return ch.version }

func (ch *Child) read() (message, []byte, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := ch.c.ReadMsgUnix(ch.buf, oob)
	if err != nil {
		return message{}, nil, err
	}
	if n == 0 {
		return message{}, nil, fmt.Errorf("the parent closed the connection")
	}
	var m message
	if err := json.Unmarshal(ch.buf[:n], &m); err != nil {
		return message{}, nil, fmt.Errorf("bad reply from the parent: %w", err)
	}
	if m.Error != "" {
		return m, nil, fmt.Errorf("the parent: %s", m.Error)
	}
	return m, oob[:oobn], nil
}

// Listeners fetches every listening socket of the parent, by address.
// The parent keeps accepting on them until Drain.
func (ch *Child) Listeners() (map[string]net.Listener, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err := send(ch.c, message{Op: "listeners", Epoch: ch.o.Epoch}, -1); err != nil {
		return nil, fmt.Errorf("hot restart: ask for the listeners: %w", err)
	}
	head, _, err := ch.read()
	if err != nil {
		return nil, fmt.Errorf("hot restart: %w", err)
	}
	ch.version = head.Version
	out := make(map[string]net.Listener, head.Count)
	fail := func(err error) (map[string]net.Listener, error) {
		for _, l := range out {
			l.Close()
		}
		return nil, fmt.Errorf("hot restart: %w", err)
	}
	for range head.Count {
		m, oob, err := ch.read()
		if err != nil {
			return fail(err)
		}
		fd, err := oneFD(oob)
		if err != nil {
			return fail(fmt.Errorf("socket for %s: %w", m.Address, err))
		}
		f := os.NewFile(uintptr(fd), "hotrestart:"+m.Address)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("socket for %s: %w", m.Address, err))
		}
		out[m.Address] = l
	}
	return out, nil
}

func oneFD(oob []byte) (int, error) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, err
	}
	if len(cmsgs) != 1 {
		return -1, fmt.Errorf("want 1 control message, got %d", len(cmsgs))
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil {
		return -1, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("want 1 descriptor, got %d", len(fds))
	}
	return fds[0], nil
}

// Drain tells the parent to stop accepting and drain; it returns once the
// parent accepts no more.
func (ch *Child) Drain() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err := send(ch.c, message{Op: "drain", Epoch: ch.o.Epoch,
		DrainTimeMs: ch.o.DrainTime.Milliseconds(), ParentShutdownTimeMs: ch.o.ParentShutdownTime.Milliseconds()}, -1); err != nil {
		return fmt.Errorf("hot restart: ask the parent to drain: %w", err)
	}
	if _, _, err := ch.read(); err != nil {
		return fmt.Errorf("hot restart: drain: %w", err)
	}
	return nil
}

// WaitParentExit blocks until the parent's end of the connection closes
// (it exited) or ctx ends.
func (ch *Child) WaitParentExit(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		for {
			if _, err := ch.c.Read(b[:]); err != nil {
				done <- nil
				return
			}
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		ch.c.Close()
		<-done
		return ctx.Err()
	}
}

// Close ends the connection to the parent.
func (ch *Child) Close() error { return ch.c.Close() }
