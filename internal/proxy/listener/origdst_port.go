//go:build linux

package listener

import "unsafe"

// unsafePortBytes views a sockaddr port field (network byte order in
// memory) as bytes.
func unsafePortBytes(p *uint16) *[2]byte { return (*[2]byte)(unsafe.Pointer(p)) }

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSoOriginalDst = 80
