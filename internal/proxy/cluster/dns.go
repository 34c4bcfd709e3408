package cluster

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// runDNS re-resolves a STRICT_DNS/LOGICAL_DNS cluster every dns_refresh_rate.
func (c *Cluster) runDNS(ctx context.Context, resolve Resolver, logf func(string, ...any)) {
	t := time.NewTicker(c.dnsRate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.resolveOnce(ctx, resolve, logf)
		}
	}
}

// resolveOnce resolves every name of the load assignment and publishes
// one host per address (LOGICAL_DNS: the first address only). On a
// failure the previous hosts are kept.
func (c *Cluster) resolveOnce(ctx context.Context, resolve Resolver, logf func(string, ...any)) {
	if c.static == nil {
		return
	}
	templ, err := compileEndpoints(c.static, c.Name, "load_assignment", true, c.interner)
	if err != nil {
		return
	}
	var hosts []*Host
	seen := map[string]bool{}
	for _, t := range templ {
		i := strings.LastIndexByte(t.Address, ':')
		name, port := t.Address[:i], t.Address[i+1:]
		var addrs []netip.Addr
		if ip, err := netip.ParseAddr(name); err == nil {
			addrs = []netip.Addr{ip}
		} else {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			addrs, err = resolve(rctx, name)
			cancel()
			if err != nil {
				logf("cluster %q: resolve %q: %v", c.Name, name, err)
				return
			}
		}
		addrs = filterFamily(addrs, c.dnsFamily)
		if c.Type == TypeLogicalDNS && len(addrs) > 1 {
			addrs = addrs[:1]
		}
		p, _ := strconv.Atoi(port)
		for _, a := range addrs {
			h2 := &Host{Address: netip.AddrPortFrom(a.Unmap(), uint16(p)).String(), Weight: t.Weight,
				Locality: t.Locality, Priority: t.Priority, LocalityWeight: t.LocalityWeight, EDSHealth: t.EDSHealth, Peer: t.Peer, ServiceAccount: t.ServiceAccount}
			if seen[h2.Address] {
				continue
			}
			seen[h2.Address] = true
			hosts = append(hosts, h2)
		}
	}
	old := c.Hosts()
	if sameAddrs(old, hosts) && c.Warm() {
		return
	}
	c.setHosts(reuseHosts(old, hosts), c.static, time.Now())
}

func sameAddrs(a, b []*Host) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Address != b[i].Address {
			return false
		}
	}
	return true
}

// filterFamily keeps the addresses of the cluster's dns_lookup_family.
func filterFamily(addrs []netip.Addr, family string) []netip.Addr {
	if family == "ip" || family == "" {
		return addrs
	}
	out := addrs[:0:0]
	for _, a := range addrs {
		if a.Unmap().Is4() == (family == "ip4") {
			out = append(out, a)
		}
	}
	return out
}
