//go:build !linux

package listener

import (
	"net"
	"net/netip"
)

func originalDst(net.Conn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
