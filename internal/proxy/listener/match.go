package listener

import (
	"net/netip"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// ConnFacts is what filter-chain matching looks at.
type ConnFacts struct {
	DstIP   netip.Addr
	DstPort uint32
	SrcIP   netip.Addr
	SrcPort uint32
	// Sniffed is set once the first bytes were inspected.
	Sniffed    bool
	ServerName string
	// Transport is "tls" or "raw_buffer".
	Transport string
	ALPN      []string
}

// needsSniff reports whether the remaining candidates differ in server
// names, transport protocol or application protocols.
func needsSniff(cands []*Chain) bool {
	for _, c := range cands {
		if len(c.names) > 0 || c.transport != "" || len(c.alpn) > 0 {
			return true
		}
	}
	return false
}

// candidates narrows chains by the destination port and IP, Envoy's first
// two stages.
func candidates(chains []*Chain, f *ConnFacts, buf []*Chain) []*Chain {
	out := buf[:0]
	for _, c := range chains {
		if c.port != 0 && c.port == f.DstPort {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		for _, c := range chains {
			if c.port == 0 {
				out = append(out, c)
			}
		}
	}
	// destination IP: the longest matching prefix wins; chains without
	// prefixes are the fallback.
	best := -1
	for _, c := range out {
		for _, p := range c.prefixes {
			if f.DstIP.IsValid() && p.Contains(f.DstIP.Unmap()) && p.Bits() > best {
				best = p.Bits()
			}
		}
	}
	n := 0
	for _, c := range out {
		keep := false
		if best >= 0 {
			for _, p := range c.prefixes {
				if f.DstIP.IsValid() && p.Contains(f.DstIP.Unmap()) && p.Bits() == best {
					keep = true
				}
			}
		} else {
			keep = len(c.prefixes) == 0
		}
		if keep {
			out[n] = c
			n++
		}
	}
	return out[:n]
}

// Match returns the filter chain for a connection, or nil.
func (l *Listener) Match(f *ConnFacts) *Chain {
	var buf [16]*Chain
	cands := candidates(l.Chains, f, buf[:0])
	cands = byServerName(cands, f.ServerName)
	cands = filter(cands, func(c *Chain) bool { return c.transport != "" && c.transport == f.Transport }, func(c *Chain) bool { return c.transport == "" })
	cands = filter(cands, func(c *Chain) bool { return intersects(c.alpn, f.ALPN) }, func(c *Chain) bool { return len(c.alpn) == 0 })
	cands = filter(cands, func(c *Chain) bool { return sourceTypeMatches(c.sourceType, f) }, nil)
	cands = filter(cands, func(c *Chain) bool { return prefixContains(c.srcPrefix, f.SrcIP) }, func(c *Chain) bool { return len(c.srcPrefix) == 0 })
	cands = filter(cands, func(c *Chain) bool { return portIn(c.srcPorts, f.SrcPort) }, func(c *Chain) bool { return len(c.srcPorts) == 0 })
	if len(cands) > 0 {
		return cands[0]
	}
	return l.Default
}

// filter keeps the chains matching specific, or, if none does, those
// matching fallback (nil fallback: keep only specific matches).
func filter(cands []*Chain, specific, fallback func(*Chain) bool) []*Chain {
	n := 0
	for _, c := range cands {
		if specific(c) {
			cands[n] = c
			n++
		}
	}
	if n > 0 || fallback == nil {
		return cands[:n]
	}
	for _, c := range cands {
		if fallback(c) {
			cands[n] = c
			n++
		}
	}
	return cands[:n]
}

func byServerName(cands []*Chain, sni string) []*Chain {
	sni = strings.ToLower(sni)
	if sni != "" {
		n := 0
		for _, c := range cands {
			for _, name := range c.names {
				if name == sni {
					cands[n] = c
					n++
					break
				}
			}
		}
		if n > 0 {
			return cands[:n]
		}
		best := -1
		for _, c := range cands {
			for _, name := range c.names {
				if strings.HasPrefix(name, "*.") && strings.HasSuffix(sni, name[1:]) && len(name) > best {
					best = len(name)
				}
			}
		}
		if best > 0 {
			n := 0
			for _, c := range cands {
				for _, name := range c.names {
					if strings.HasPrefix(name, "*.") && strings.HasSuffix(sni, name[1:]) && len(name) == best {
						cands[n] = c
						n++
						break
					}
				}
			}
			return cands[:n]
		}
	}
	n := 0
	for _, c := range cands {
		if len(c.names) == 0 {
			cands[n] = c
			n++
		}
	}
	return cands[:n]
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func sourceTypeMatches(t listenerv3.FilterChainMatch_ConnectionSourceType, f *ConnFacts) bool {
	switch t {
	case listenerv3.FilterChainMatch_SAME_IP_OR_LOOPBACK:
		return f.SrcIP.IsLoopback() || f.SrcIP == f.DstIP
	case listenerv3.FilterChainMatch_EXTERNAL:
		return !(f.SrcIP.IsLoopback() || f.SrcIP == f.DstIP)
	}
	return true
}

func prefixContains(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if ip.IsValid() && p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

func portIn(ports []uint32, p uint32) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}
