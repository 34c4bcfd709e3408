package validate

import (
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Checks shared by several kinds. Each reports through the checker and
// names the field path it was given.

var dnsLabelRE = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)

// checkFQDN checks a DNS name, optionally with a leading "*." or "*" label.
func (c *checker) checkFQDN(p Path, host string, wildcard bool) bool {
	if host == "" {
		c.errorf(p, "empty host; want a DNS name such as reviews or reviews.default.svc.cluster.local")
		return false
	}
	if len(host) > 255 {
		c.errorf(p, "host %q is longer than 255 characters", host)
		return false
	}
	if host == "*" {
		if !wildcard {
			c.errorf(p, "wildcard host %q is not allowed here; name one host", host)
			return false
		}
		return true
	}
	name := host
	if strings.HasPrefix(host, "*") {
		if !wildcard {
			c.errorf(p, "wildcard host %q is not allowed here; name one host", host)
			return false
		}
		if !strings.HasPrefix(host, "*.") {
			// Istio accepts "*foo.com"-style prefixes only as "*." plus a domain.
			c.errorf(p, "invalid wildcard host %q; a wildcard must be the whole first label, as in *.example.com", host)
			return false
		}
		name = host[2:]
	}
	name = strings.TrimSuffix(name, ".")
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 || !dnsLabelRE.MatchString(label) {
			c.errorf(p, "invalid host %q: label %q must be 1-63 letters, digits or '-', starting and ending with a letter or digit", host, label)
			return false
		}
	}
	return true
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (c *checker) checkIPOrCIDR(p Path, s string) {
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err != nil {
			c.errorf(p, "%q is not a valid CIDR block, such as 10.0.0.0/16", s)
		}
		return
	}
	if !isIP(s) {
		c.errorf(p, "%q is not a valid IP address or CIDR block", s)
	}
}

// checkPort checks a port number that must be set.
func (c *checker) checkPort(p Path, n uint32) {
	if n < 1 || n > 65535 {
		c.errorf(p, "port %d is out of range; want 1-65535", n)
	}
}

// checkOptionalPort checks a port number where zero means unset.
func (c *checker) checkOptionalPort(p Path, n uint32) {
	if n > 65535 {
		c.errorf(p, "port %d is out of range; want 1-65535 (or leave unset)", n)
	}
}

// checkDuration applies Istio's rule: at least 1ms, millisecond precision.
func (c *checker) checkDuration(p Path, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		c.errorf(p, "invalid duration: %v", err)
		return
	}
	v := d.AsDuration()
	if v < time.Millisecond {
		c.errorf(p, "duration %s must be at least 1ms (write e.g. \"0.001s\" or more)", v)
		return
	}
	if v%time.Millisecond != 0 {
		c.errorf(p, "duration %s has sub-millisecond precision; only whole milliseconds are supported", v)
	}
}

func (c *checker) checkPercent(p Path, v float64) {
	if v < 0 || v > 100 {
		c.errorf(p, "%v must be between 0 and 100", v)
	}
}

// checkFractionalPercent checks a fault percentage: Envoy keeps four
// decimal places, so a value between 0 and 0.0001 would silently become 0.
func (c *checker) checkFractionalPercent(p Path, v float64) {
	if v < 0 || v > 100 {
		c.errorf(p, "%v must be between 0 and 100", v)
		return
	}
	if v > 0 && v < 0.0001 {
		c.errorf(p, "%v is below the smallest fraction 0.0001; use 0 or a value from 0.0001 to 100", v)
	}
}

// maxRegexLen bounds a regex's length, standing in for Envoy's limit on
// the compiled RE2 program size (which is always larger than the length).
const maxRegexLen = 1024

// checkRegex checks that an RE2 regex compiles (Go's regexp is RE2).
func (c *checker) checkRegex(p Path, re string) {
	if re == "" {
		c.errorf(p, "empty regex; use a non-empty RE2 expression, or prefix/exact")
		return
	}
	if len(re) > maxRegexLen {
		c.errorf(p, "regex is %d characters long; the limit is %d (Envoy's RE2 program size)", len(re), maxRegexLen)
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		c.errorf(p, "invalid RE2 regex %q: %s", re, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

// checkLabels checks Kubernetes label keys and values (selectors, subsets).
func (c *checker) checkLabels(p Path, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.errorf(p.Key(k), "invalid label key %q: %s", k, errs[0])
		}
		if v := labels[k]; v == "*" {
			c.errorf(p.Key(k), "wildcard label value \"*\" is not allowed; name a value")
		} else if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.errorf(p.Key(k), "invalid label value %q: %s", v, errs[0])
		}
	}
}

// checkExportTo checks an exportTo list: ".", "*", namespace names, and
// "~" (no namespace) for ServiceEntries only. "." and the resource's own
// namespace name the same thing, and "*" already covers every other entry.
// A DestinationRule with a workloadSelector applies to workloads of its own
// namespace only, so it may be exported nowhere else (ownNamespaceOnly).
func (c *checker) checkExportTo(p Path, list []string, allowNone, ownNamespaceOnly bool) {
	seen := map[string]int{}
	for i, ns := range list {
		key := ns
		if ns == "." && c.r.Namespace != "" {
			key = c.r.Namespace
		}
		if j, dup := seen[key]; dup {
			if key != ns || list[j] != ns {
				c.errorf(p.Index(i), "%q repeats exportTo[%d]: \".\" already means the resource's own namespace %q", ns, j, c.r.Namespace)
			} else {
				c.errorf(p.Index(i), "duplicate exportTo entry %q", ns)
			}
			continue
		}
		seen[key] = i
		switch ns {
		case ".", "*":
			continue
		case "~":
			if !allowNone {
				c.errorf(p.Index(i), "\"~\" (export to no namespace) is only allowed in a ServiceEntry; want \".\", \"*\" or a namespace name")
			}
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			c.errorf(p.Index(i), "%q is not \".\", \"*\" or a namespace name", ns)
		}
	}
	if len(list) > 1 {
		if _, ok := seen["~"]; ok {
			c.errorf(p, "\"~\" (export to no namespace) cannot be combined with other entries")
		}
		if _, ok := seen["*"]; ok {
			c.errorf(p, "\"*\" (export to every namespace) cannot be combined with other entries; keep only \"*\"")
		}
	}
	if ownNamespaceOnly && len(list) > 0 {
		for i, ns := range list {
			if ns != "." && ns != c.r.Namespace {
				c.errorf(p.Index(i), "a DestinationRule with a workloadSelector can only be exported to its own namespace; want \".\"")
			}
		}
	}
}

// checkNamespacedHost checks "ns/host" as Gateway and Sidecar hosts use it.
// A Sidecar (sidecar true) must write the "ns/" part and may exclude a
// namespace with "~" ("~/*", "~legacy/*"); a Gateway may leave it out and
// may name an IP address. Either way the host part is "*" or a name with a
// dot: short names are ambiguous outside the resource's namespace.
func (c *checker) checkNamespacedHost(p Path, s string, sidecar bool) {
	ns, host, found := strings.Cut(s, "/")
	if !found {
		if sidecar {
			c.errorf(p, "%q must have the form namespace/host, such as \"./*\", \"istio-system/*\" or \"*/reviews.default.svc.cluster.local\"", s)
			return
		}
		host, ns = s, "*"
	}
	if ns == "" || host == "" {
		c.errorf(p, "%q has an empty namespace or host; want namespace/host", s)
		return
	}
	nsName := ns
	if sidecar {
		nsName = strings.TrimPrefix(ns, "~")
	}
	switch nsName {
	case "*", ".", "":
	default:
		if errs := validation.IsDNS1123Label(nsName); len(errs) > 0 {
			c.errorf(p, "namespace %q in %q is not \"*\", \".\" or a namespace name", ns, s)
			return
		}
	}
	if strings.Contains(host, "/") {
		c.errorf(p, "%q has more than one '/'; want namespace/host", s)
		return
	}
	if !sidecar && isIP(host) {
		return
	}
	if host != "*" && !strings.Contains(host, ".") {
		c.errorf(p, "short name %q is not allowed here; write the fully qualified name, such as %s.default.svc.cluster.local", host, host)
		return
	}
	c.checkFQDN(p, host, true)
}

// protocols Istio accepts for ports (case-insensitive).
var protocols = map[string]bool{
	"HTTP": true, "HTTPS": true, "GRPC": true, "GRPC-WEB": true, "HTTP2": true, "HTTP_PROXY": true,
	"MONGO": true, "REDIS": true, "MYSQL": true, "TCP": true, "TLS": true, "UDP": true,
}

func (c *checker) checkProtocol(p Path, proto string, required bool) {
	if proto == "" {
		if required {
			c.errorf(p, "missing protocol; want one of HTTP, HTTPS, GRPC, HTTP2, TCP, TLS, MONGO, REDIS, MYSQL")
		}
		return
	}
	if !protocols[strings.ToUpper(proto)] {
		c.errorf(p, "unsupported protocol %q; want one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, TCP, TLS, MONGO, REDIS, MYSQL", proto)
	}
}

// checkGatewayName checks a gateway reference: "mesh", "name" or "ns/name".
func (c *checker) checkGatewayName(p Path, g string) {
	if g == "mesh" {
		return
	}
	ns, name, found := strings.Cut(g, "/")
	if !found {
		name, ns = g, ""
	}
	if ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			c.errorf(p, "invalid gateway %q: namespace %q is not a namespace name", g, ns)
			return
		}
	}
	if name == "" || strings.Contains(name, "/") {
		c.errorf(p, "invalid gateway %q; want \"mesh\", \"name\" or \"namespace/name\"", g)
		return
	}
	// Istio also accepts the gateway's FQDN-style name "name.ns.svc.cluster.local".
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		c.errorf(p, "invalid gateway %q: %q is not a valid resource name (lower-case letters, digits, '-' and '.')", g, name)
	}
}

func (c *checker) checkSubsetName(p Path, s string) {
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		c.errorf(p, "invalid subset name %q: want a DNS-1123 label (lower-case letters, digits and '-', at most 63)", s)
	}
}

// checkBindAddress checks a listener bind address (IP or unix socket).
func (c *checker) checkBindAddress(p Path, s string) {
	if s == "" {
		return
	}
	if path, ok := strings.CutPrefix(s, "unix://"); ok {
		c.checkUnixPath(p, path)
		return
	}
	if !isIP(s) {
		c.errorf(p, "bind %q is not an IP address or unix:// path", s)
	}
}

// checkDefaultEndpoint checks a Sidecar ingress defaultEndpoint: the
// workload's own loopback or any address ("127.0.0.1:8080", "[::1]:8080",
// "0.0.0.0:8080", "[::]:8080", ":8080") or "unix://path".
func (c *checker) checkDefaultEndpoint(p Path, s string) {
	if s == "" {
		return
	}
	if path, ok := strings.CutPrefix(s, "unix://"); ok {
		c.checkUnixPath(p, path)
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		c.errorf(p, "defaultEndpoint %q must be IP:PORT (127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080) or unix://path", s)
		return
	}
	switch host {
	case "", "127.0.0.1", "0.0.0.0", "::1", "::":
	default:
		c.errorf(p, "defaultEndpoint %q must point at the workload itself: 127.0.0.1, 0.0.0.0, [::1] or [::] with a port, or unix://path", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.errorf(p, "defaultEndpoint %q has port %q; want 1-65535", s, port)
	}
}

// checkUnixPath checks the path of a unix:// address: absolute and naming a
// file, or an abstract socket starting with '@'.
func (c *checker) checkUnixPath(p Path, path string) {
	if strings.HasPrefix(path, "@") && len(path) > 1 {
		return
	}
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") {
		c.errorf(p, "unix socket path %q must be an absolute path to a file, such as unix:///var/run/app.sock (or @name for an abstract socket)", path)
	}
}

// checkPortName checks a port name, which Istio requires to be a DNS-1123
// label.
func (c *checker) checkPortName(p Path, name string) {
	if name == "" {
		c.errorf(p, "missing; name the port, such as http or tcp-db")
		return
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		c.errorf(p, "invalid port name %q: want a DNS-1123 label (lower-case letters, digits and '-', at most 63)", name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
