package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Chain names, as Istio names them so that users' debugging habits carry over.
const (
	ChainInbound    = "ISTIO_INBOUND"
	ChainRedirect   = "ISTIO_REDIRECT"
	ChainInRedirect = "ISTIO_IN_REDIRECT"
	ChainOutput     = "ISTIO_OUTPUT"
)

// Table is the only table the REDIRECT mode touches.
const Table = "nat"

// Ports the proxy always serves itself and that are never captured inbound.
const (
	TunnelPort = 15008 // HBONE, always excluded
)

// DefaultExcludeInboundPorts are the ports Istio's injector excludes from
// inbound capture: Prometheus, health and merged metrics.
var DefaultExcludeInboundPorts = []string{"15020", "15021", "15090"}

// Options are the interception settings; the field comments name the
// istio-iptables flag and the install value (seed 003) each one mirrors.
type Options struct {
	// ProxyPort is where outbound TCP is redirected (-p); zero means 15001.
	ProxyPort int
	// InboundCapturePort is where inbound TCP is redirected (-z); zero
	// means 15006.
	InboundCapturePort int
	// ProxyUID and ProxyGID are the proxy's uid/gid, whose traffic is never
	// redirected (-u/-g); empty means "1337". Comma-separated lists allowed.
	ProxyUID string
	ProxyGID string
	// InboundPorts is "*" (capture all inbound TCP except
	// ExcludeInboundPorts), a list of ports to capture, or empty (capture no
	// inbound traffic) (-b, proxy.includeInboundPorts).
	InboundPorts []string
	// ExcludeInboundPorts are not captured when InboundPorts is "*" (-d,
	// proxy.excludeInboundPorts).
	ExcludeInboundPorts []string
	// IncludeOutboundIPRanges are CIDRs whose outbound traffic is captured;
	// "*" means all, empty means none (-i, proxy.includeIPRanges).
	IncludeOutboundIPRanges []string
	// ExcludeOutboundIPRanges are CIDRs never captured (-x,
	// proxy.excludeIPRanges).
	ExcludeOutboundIPRanges []string
	// IncludeOutboundPorts are captured whatever their destination IP (-q).
	IncludeOutboundPorts []string
	// ExcludeOutboundPorts are never captured outbound (-o).
	ExcludeOutboundPorts []string
}

// DefaultOptions returns the settings Istio's injector uses by default:
// capture everything both ways except the proxy's own ports.
func DefaultOptions() Options {
	return Options{
		ProxyPort:               15001,
		InboundCapturePort:      15006,
		ProxyUID:                "1337",
		ProxyGID:                "1337",
		InboundPorts:            []string{"*"},
		ExcludeInboundPorts:     append([]string(nil), DefaultExcludeInboundPorts...),
		IncludeOutboundIPRanges: []string{"*"},
	}
}

// Rule is one rule appended to a chain of the nat table.
type Rule struct {
	Chain string
	Args  []string // match and target, e.g. "-p tcp -j ISTIO_INBOUND"
}

// String renders the rule as an iptables-restore line ("-A CHAIN ...").
func (r Rule) String() string {
	return "-A " + r.Chain + " " + strings.Join(r.Args, " ")
}

// RuleSet is the outcome of Rules: the chains to create and the rules to
// append, in order.
type RuleSet struct {
	Chains []string
	Rules  []Rule
}

// Restore renders the rule set as iptables-restore input for the nat table,
// in the order istio-iptables emits it.
func (rs RuleSet) Restore() string {
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	for _, c := range rs.Chains {
		b.WriteString("-N " + c + "\n")
	}
	for _, r := range rs.Rules {
		b.WriteString(r.String() + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Jumps returns the rules appended to built-in chains (PREROUTING, OUTPUT):
// the only rules outside the ISTIO_* chains, which cleanup deletes one by one.
func (rs RuleSet) Jumps() []Rule {
	var out []Rule
	for _, r := range rs.Rules {
		if !isOwnChain(r.Chain) {
			out = append(out, r)
		}
	}
	return out
}

func isOwnChain(c string) bool {
	switch c {
	case ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput:
		return true
	}
	return false
}

// OwnChains lists every chain Trellis may create, in creation order.
func OwnChains() []string {
	return []string{ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput}
}

// Rules computes the nat rules for opts. It is pure: the same options give
// the same rules, in Istio's order. Invalid options return an error naming
// the option and the fix.
func Rules(opts Options) (RuleSet, error) {
	o, err := normalize(opts)
	if err != nil {
		return RuleSet{}, err
	}
	var rs RuleSet
	add := func(chain string, args ...string) { rs.Rules = append(rs.Rules, Rule{Chain: chain, Args: args}) }
	rs.Chains = OwnChains()
	tunnel := strconv.Itoa(TunnelPort)

	add(ChainInbound, "-p", "tcp", "--dport", tunnel, "-j", "RETURN")
	add(ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(o.ProxyPort))
	add(ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(o.InboundCapturePort))

	// Inbound.
	if len(o.InboundPorts) > 0 {
		add("PREROUTING", "-p", "tcp", "-j", ChainInbound)
		if isWildcard(o.InboundPorts) {
			for _, p := range o.ExcludeInboundPorts {
				add(ChainInbound, "-p", "tcp", "--dport", p, "-j", "RETURN")
			}
			add(ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
		} else {
			for _, p := range o.InboundPorts {
				add(ChainInbound, "-p", "tcp", "--dport", p, "-j", ChainInRedirect)
			}
		}
	}

	// Outbound.
	add("OUTPUT", "-j", ChainOutput)
	for _, p := range o.ExcludeOutboundPorts {
		add(ChainOutput, "-p", "tcp", "--dport", p, "-j", "RETURN")
	}
	// Inbound passthrough: the proxy connects to the app from 127.0.0.6.
	add(ChainOutput, "-o", "lo", "-s", "127.0.0.6/32", "-j", "RETURN")
	for _, uid := range o.uids {
		add(ChainOutput, "-o", "lo", "!", "-d", "127.0.0.1/32", "-p", "tcp", "!", "--dport", tunnel, "-m", "owner", "--uid-owner", uid, "-j", ChainInRedirect)
		add(ChainOutput, "-o", "lo", "-m", "owner", "!", "--uid-owner", uid, "-j", "RETURN")
		add(ChainOutput, "-m", "owner", "--uid-owner", uid, "-j", "RETURN")
	}
	for _, gid := range o.gids {
		add(ChainOutput, "-o", "lo", "!", "-d", "127.0.0.1/32", "-p", "tcp", "!", "--dport", tunnel, "-m", "owner", "--gid-owner", gid, "-j", ChainInRedirect)
		add(ChainOutput, "-o", "lo", "-m", "owner", "!", "--gid-owner", gid, "-j", "RETURN")
		add(ChainOutput, "-m", "owner", "--gid-owner", gid, "-j", "RETURN")
	}
	add(ChainOutput, "-d", "127.0.0.1/32", "-j", "RETURN")
	for _, c := range o.ExcludeOutboundIPRanges {
		add(ChainOutput, "-d", c, "-j", "RETURN")
	}
	for _, p := range o.IncludeOutboundPorts {
		add(ChainOutput, "-p", "tcp", "--dport", p, "-j", ChainRedirect)
	}
	if isWildcard(o.IncludeOutboundIPRanges) {
		add(ChainOutput, "-j", ChainRedirect)
	} else {
		for _, c := range o.IncludeOutboundIPRanges {
			add(ChainOutput, "-d", c, "-j", ChainRedirect)
		}
	}
	return rs, nil
}

type normalized struct {
	Options
	uids, gids []string
}

func isWildcard(list []string) bool { return len(list) == 1 && list[0] == "*" }

// normalize fills defaults, trims and validates every option.
func normalize(opts Options) (normalized, error) {
	o := normalized{Options: opts}
	if o.ProxyPort == 0 {
		o.ProxyPort = 15001
	}
	if o.InboundCapturePort == 0 {
		o.InboundCapturePort = 15006
	}
	if err := checkPort("proxy-port", o.ProxyPort); err != nil {
		return o, err
	}
	if err := checkPort("inbound-capture-port", o.InboundCapturePort); err != nil {
		return o, err
	}
	var err error
	if o.uids, err = ids("proxy-uid", o.ProxyUID); err != nil {
		return o, err
	}
	if o.gids, err = ids("proxy-gid", o.ProxyGID); err != nil {
		return o, err
	}
	if o.InboundPorts, err = portList("include-inbound-ports", o.InboundPorts, true); err != nil {
		return o, err
	}
	if o.ExcludeInboundPorts, err = portList("exclude-inbound-ports", o.ExcludeInboundPorts, false); err != nil {
		return o, err
	}
	if o.IncludeOutboundPorts, err = portList("include-outbound-ports", o.IncludeOutboundPorts, false); err != nil {
		return o, err
	}
	if o.ExcludeOutboundPorts, err = portList("exclude-outbound-ports", o.ExcludeOutboundPorts, false); err != nil {
		return o, err
	}
	if o.IncludeOutboundIPRanges, err = cidrList("include-outbound-ip-ranges", o.IncludeOutboundIPRanges, true); err != nil {
		return o, err
	}
	if o.ExcludeOutboundIPRanges, err = cidrList("exclude-outbound-ip-ranges", o.ExcludeOutboundIPRanges, false); err != nil {
		return o, err
	}
	return o, nil
}

func checkPort(name string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s: got %d, want a port between 1 and 65535", name, p)
	}
	return nil
}

func ids(name, v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		v = "1337"
	}
	var out []string
	for _, s := range splitList([]string{v}) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a numeric id; give the proxy's numeric uid/gid, e.g. 1337", name, s)
		}
		out = append(out, strconv.FormatUint(n, 10))
	}
	return out, nil
}

// splitList accepts both repeated values and comma-separated ones, trims
// blanks and drops empty items.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func portList(name string, in []string, wildcardOK bool) ([]string, error) {
	list := splitList(in)
	var out []string
	seen := map[string]bool{}
	for i, s := range list {
		if s == "*" {
			if !wildcardOK {
				return nil, fmt.Errorf("%s[%d]: \"*\" is not allowed here; list port numbers", name, i)
			}
			if len(list) != 1 {
				return nil, fmt.Errorf("%s: \"*\" must be the only value, got %q", name, strings.Join(list, ","))
			}
			return []string{"*"}, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s[%d]: got %q, want a port between 1 and 65535", name, i, s)
		}
		p := strconv.Itoa(n)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func cidrList(name string, in []string, wildcardOK bool) ([]string, error) {
	list := splitList(in)
	var out []string
	for i, s := range list {
		if s == "*" {
			if !wildcardOK {
				return nil, fmt.Errorf("%s[%d]: \"*\" is not allowed here; list CIDRs such as 10.0.0.0/8", name, i)
			}
			if len(list) != 1 {
				return nil, fmt.Errorf("%s: \"*\" must be the only value, got %q", name, strings.Join(list, ","))
			}
			return []string{"*"}, nil
		}
		var pfx netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			pfx, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: got %q, want an IPv4 CIDR such as 10.96.0.0/12", name, i, s)
		}
		if !pfx.Addr().Is4() {
			return nil, fmt.Errorf("%s[%d]: got %q: IPv6 ranges are not supported; list IPv4 CIDRs only", name, i, s)
		}
		out = append(out, pfx.Masked().String())
	}
	return out, nil
}
