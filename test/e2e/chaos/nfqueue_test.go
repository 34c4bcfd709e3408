package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set), so
// the delay case holds packets in user space instead: an iptables NFQUEUE
// rule hands each packet to a netlink queue, and the delayer gives the
// kernel its ACCEPT verdict delay later. Packets keep their order within a
// flow because every verdict waits the same time.

// Netlink and nfnetlink_queue constants (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaCfgCmd     = 1
	nfqaCfgParams  = 2

	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2
	nfqnlCopyMeta     = 1

	nfAccept = 1
)

// delayer holds the packets of one NFQUEUE queue for a fixed time.
type delayer struct {
	fd    int
	queue uint16
	delay time.Duration

	mu     sync.Mutex // serialises writes; guards seq and closed
	seq    uint32
	closed bool
	done   chan struct{}
}

// startDelayer binds queue in the named namespace (a netlink socket
// belongs to the namespace it was made in) and starts releasing its
// packets delay after they arrive.
func startDelayer(ns string, queue uint16, delay time.Duration) (*delayer, error) {
	d := &delayer{fd: -1, queue: queue, delay: delay, done: make(chan struct{})}
	err := netns.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		d.fd = fd
		// A receive timeout lets run notice stop.
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		if d.fd >= 0 {
			unix.Close(d.fd)
		}
		return nil, err
	}
	// Bind the queue, then ask for packet metadata only (the id is all a
	// verdict needs).
	if err := d.request(nfqnlMsgConfig, attr(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})); err != nil {
		unix.Close(d.fd)
		return nil, fmt.Errorf("bind queue %d: %w", queue, err)
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0)
	params[4] = nfqnlCopyMeta
	if err := d.request(nfqnlMsgConfig, attr(nfqaCfgParams, params)); err != nil {
		unix.Close(d.fd)
		return nil, fmt.Errorf("queue %d copy mode: %w", queue, err)
	}
	go d.run()
	return d, nil
}

// message is a netlink message of type nfqueue/msg for this queue.
func (d *delayer) message(msg uint16, flags uint16, attrs ...[]byte) []byte {
	body := []byte{unix.AF_UNSPEC, 0, byte(d.queue >> 8), byte(d.queue)} // nfgenmsg, res_id big endian
	for _, a := range attrs {
		body = append(body, a...)
	}
	d.seq++
	h := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(h[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(h[4:], nfnlSubsysQueue<<8|msg)
	binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(h[8:], d.seq)
	return append(h, body...)
}

// request sends a config message and waits for the kernel's ack.
func (d *delayer) request(msg uint16, attrs ...[]byte) error {
	d.mu.Lock()
	m := d.message(msg, unix.NLM_F_ACK, attrs...)
	seq := d.seq
	d.mu.Unlock()
	if err := unix.Sendto(d.fd, m, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.typ == unix.NLMSG_ERROR && m.seq == seq {
				if code := int32(binary.NativeEndian.Uint32(m.data)); code != 0 {
					return unix.Errno(-code)
				}
				return nil
			}
		}
	}
}

// attr is one netlink attribute, padded to 4 bytes.
func attr(typ uint16, val []byte) []byte {
	b := make([]byte, 4, 4+len(val)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(val)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// run reads queued packets and schedules each one's verdict.
func (d *delayer) run() {
	defer close(d.done)
	buf := make([]byte, 1<<16)
	for {
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		if closed {
			return
		}
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.typ != nfnlSubsysQueue<<8|nfqnlMsgPacket || len(m.data) < 4 {
				continue
			}
			if id, ok := packetID(m.data[4:]); ok {
				time.AfterFunc(d.delay, func() { d.accept(id) })
			}
		}
	}
}

// packetID finds NFQA_PACKET_HDR's packet id among the attributes.
func packetID(b []byte) (uint32, bool) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ unix.NLA_F_NESTED
		if l < 4 || l > len(b) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(b[4:]), true
		}
		b = b[(l+3)&^3:]
	}
	return 0, false
}

func (d *delayer) accept(id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:], nfAccept)
	binary.BigEndian.PutUint32(v[4:], id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	unix.Sendto(d.fd, d.message(nfqnlMsgVerdict, 0, attr(nfqaVerdictHdr, v)), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// stop lets what is held go (call it after the NFQUEUE rule is gone: no
// packet arrives later), unbinds the queue and closes the socket.
func (d *delayer) stop() {
	time.Sleep(2 * d.delay)
	d.mu.Lock()
	m := d.message(nfqnlMsgConfig, 0, attr(nfqaCfgCmd, []byte{nfqnlCfgCmdUnbind, 0, 0, 0}))
	unix.Sendto(d.fd, m, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	d.closed = true
	d.mu.Unlock()
	<-d.done
	unix.Close(d.fd)
}

// nlmsg is one parsed netlink message.
type nlmsg struct {
	typ  uint16
	seq  uint32
	data []byte
}

// parseNetlink splits a datagram into its netlink messages.
func parseNetlink(b []byte) ([]nlmsg, error) {
	var out []nlmsg
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return out, fmt.Errorf("netlink message length %d of %d", l, len(b))
		}
		out = append(out, nlmsg{typ: binary.NativeEndian.Uint16(b[4:]), seq: binary.NativeEndian.Uint32(b[8:]), data: b[unix.NLMSG_HDRLEN:l]})
		b = b[(l+3)&^3:]
	}
	return out, nil
}
