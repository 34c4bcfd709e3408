//go:build linux

package listener

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// originalDst returns the destination a REDIRECTed connection was sent to
// (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST); ok is false when the
// connection was not redirected.
func originalDst(c net.Conn) (netip.AddrPort, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	var ap netip.AddrPort
	var found bool
	v6 := false
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok && ta.IP.To4() == nil {
		v6 = true
	}
	rc.Control(func(fd uintptr) {
		if !v6 {
			mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				return
			}
			// struct sockaddr_in: family(2) port(2, big endian) addr(4)
			raw := mreq.Multiaddr
			port := binary.BigEndian.Uint16(raw[2:4])
			ip := netip.AddrFrom4([4]byte{raw[4], raw[5], raw[6], raw[7]})
			ap, found = netip.AddrPortFrom(ip, port), true
			return
		}
		info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err != nil {
			return
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafePortBytes(&info.Addr.Port))[:])
		ap, found = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr), port), true
	})
	return ap, found
}
