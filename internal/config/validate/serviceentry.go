package validate

import (
	"regexp"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func (c *checker) serviceEntry(se *networking.ServiceEntry) {
	spec := Path("spec")
	if len(se.GetHosts()) == 0 {
		c.errorf(spec.Field("hosts"), "missing; a ServiceEntry needs at least one host")
	}
	wildcard := false
	for i, h := range se.GetHosts() {
		p := spec.Field("hosts").Index(i)
		if h == "*" {
			c.errorf(p, "host \"*\" is not allowed; name the hosts (a wildcard such as *.example.com is allowed)")
			continue
		}
		if isIP(h) {
			c.warnf(p, "host %q is an IP address; put IPs in addresses and use a DNS name as host", h)
			continue
		}
		c.checkFQDN(p, h, true)
		if strings.HasPrefix(h, "*") {
			wildcard = true
		}
	}
	for i, a := range se.GetAddresses() {
		c.checkIPOrCIDR(spec.Field("addresses").Index(i), a)
	}
	if len(se.GetPorts()) == 0 {
		c.warnf(spec.Field("ports"), "missing; without ports the ServiceEntry adds no listeners or clusters")
	}
	portNames := map[string]int{}
	portNumbers := map[uint32]int{}
	for i, sp := range se.GetPorts() {
		p := spec.Field("ports").Index(i)
		c.checkPort(p.Field("number"), sp.GetNumber())
		c.checkProtocol(p.Field("protocol"), sp.GetProtocol(), false)
		c.checkOptionalPort(p.Field("targetPort"), sp.GetTargetPort())
		c.checkPortName(p.Field("name"), sp.GetName())
		if n := sp.GetName(); n != "" {
			if j, dup := portNames[n]; dup {
				c.errorf(p.Field("name"), "port name %q is already used by ports[%d]", n, j)
			}
			portNames[n] = i
		}
		if j, dup := portNumbers[sp.GetNumber()]; dup {
			c.errorf(p.Field("number"), "port %d is already declared by ports[%d]", sp.GetNumber(), j)
		}
		portNumbers[sp.GetNumber()] = i
	}
	if se.GetWorkloadSelector() != nil && len(se.GetEndpoints()) > 0 {
		c.errorf(spec.Field("workloadSelector"), "workloadSelector and endpoints are exclusive; use only one")
	}
	if ws := se.GetWorkloadSelector(); ws != nil {
		c.checkLabels(spec.Field("workloadSelector").Field("labels"), ws.GetLabels())
	}
	res := se.GetResolution()
	if res != networking.ServiceEntry_NONE && len(se.GetHosts()) > 1 {
		// Only HTTP (by authority) and TLS (by SNI) tell hosts apart on
		// one port; plain TCP traffic to several hosts is ambiguous.
		for i, sp := range se.GetPorts() {
			if proto := strings.ToUpper(sp.GetProtocol()); !httpProtocols[proto] && proto != "HTTPS" && proto != "TLS" {
				c.errorf(spec.Field("ports").Index(i).Field("protocol"), "several hosts share this %s port, which cannot tell them apart; use one host per ServiceEntry, an HTTP or TLS protocol, or resolution NONE", protocolName(proto))
				break
			}
		}
	}
	switch res {
	case networking.ServiceEntry_NONE:
		if len(se.GetEndpoints()) > 0 {
			c.errorf(spec.Field("endpoints"), "resolution NONE passes traffic to the original destination and takes no endpoints; use STATIC or DNS, or remove endpoints")
		}
		if se.GetWorkloadSelector() != nil {
			c.warnf(spec.Field("workloadSelector"), "has no effect with resolution NONE, which sends traffic to the original destination; use STATIC")
		}
	case networking.ServiceEntry_STATIC:
		if len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
			c.warnf(spec.Field("endpoints"), "resolution STATIC with no endpoints and no workloadSelector: the service has no instances")
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN, networking.ServiceEntry_DYNAMIC_DNS:
		if len(se.GetEndpoints()) == 0 && wildcard && res != networking.ServiceEntry_DYNAMIC_DNS {
			for i, h := range se.GetHosts() {
				if strings.HasPrefix(h, "*") {
					c.errorf(spec.Field("hosts").Index(i), "wildcard host %q cannot be resolved by DNS without endpoints; add endpoints, or use resolution NONE or DYNAMIC_DNS", h)
				}
			}
		}
		if res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.GetEndpoints()) > 1 {
			c.errorf(spec.Field("endpoints"), "resolution DNS_ROUND_ROBIN takes at most one endpoint; use DNS for several")
		}
		if res == networking.ServiceEntry_DYNAMIC_DNS {
			c.dynamicDNS(spec, se)
		}
	}
	if res == networking.ServiceEntry_STATIC {
		for i, ep := range se.GetEndpoints() {
			if strings.HasPrefix(ep.GetAddress(), "unix://") && len(se.GetPorts()) != 1 {
				c.errorf(spec.Field("endpoints").Index(i).Field("address"), "a unix:// endpoint needs a ServiceEntry with exactly one port, got %d", len(se.GetPorts()))
			}
		}
	}
	for _, a := range se.GetAddresses() {
		if res == networking.ServiceEntry_NONE || !strings.Contains(a, "/") {
			continue
		}
		if res != networking.ServiceEntry_STATIC {
			c.errorf(spec.Field("addresses"), "CIDR address %q needs resolution NONE or STATIC", a)
			break
		}
	}
	for i, ep := range se.GetEndpoints() {
		p := spec.Field("endpoints").Index(i)
		c.workloadEntry(p, ep, true)
		addr := ep.GetAddress()
		switch {
		case res == networking.ServiceEntry_STATIC && addr != "" && !isIP(addr) && !strings.HasPrefix(addr, "unix://"):
			c.errorf(p.Field("address"), "%q is not an IP address; resolution STATIC needs IP (or unix://) endpoint addresses, use DNS for host names", addr)
		case addr == "" && ep.GetNetwork() == "":
			c.errorf(p.Field("address"), "missing; an endpoint needs an address (or a network for a remote gateway)")
		}
		for _, name := range sortedKeys(ep.GetPorts()) {
			if len(portNames) > 0 {
				if _, ok := portNames[name]; !ok {
					c.errorf(p.Field("ports").Key(name), "port name %q is not one of the ServiceEntry's port names", name)
				}
			}
		}
	}
	c.checkExportTo(spec.Field("exportTo"), se.GetExportTo(), true, false)
	for i, san := range se.GetSubjectAltNames() {
		if san == "" {
			c.errorf(spec.Field("subjectAltNames").Index(i), "empty subject alternative name")
		}
	}
}

// dynamicDNS checks resolution DYNAMIC_DNS: the proxy resolves each
// request's own host name, so the hosts are wildcards, the ports carry HTTP
// or TLS (a name to resolve), and there are no addresses or endpoints.
func (c *checker) dynamicDNS(spec Path, se *networking.ServiceEntry) {
	for i, h := range se.GetHosts() {
		if !strings.HasPrefix(h, "*") {
			c.errorf(spec.Field("hosts").Index(i), "host %q is not a wildcard; resolution DYNAMIC_DNS needs wildcard hosts such as *.example.com (use DNS for a fixed name)", h)
		}
	}
	if len(se.GetAddresses()) > 0 {
		c.errorf(spec.Field("addresses"), "not allowed with resolution DYNAMIC_DNS, which routes by host name only")
	}
	if len(se.GetEndpoints()) > 0 {
		c.errorf(spec.Field("endpoints"), "not allowed with resolution DYNAMIC_DNS, which resolves each request's host name")
	}
	for i, sp := range se.GetPorts() {
		switch strings.ToUpper(sp.GetProtocol()) {
		case "HTTP", "TLS", "GRPC", "HTTP2":
		default:
			c.errorf(spec.Field("ports").Index(i).Field("protocol"), "%s is not allowed with resolution DYNAMIC_DNS; want HTTP, HTTP2, GRPC or TLS", protocolName(sp.GetProtocol()))
		}
	}
}

// protocolName shows a port protocol, naming the unset one.
func protocolName(proto string) string {
	if proto == "" {
		return "unset (TCP)"
	}
	return proto
}

// workloadEntry checks a WorkloadEntry spec, standalone or as a ServiceEntry
// endpoint (where the address rules depend on the resolution).
func (c *checker) workloadEntry(p Path, we *networking.WorkloadEntry, inServiceEntry bool) {
	addr := we.GetAddress()
	if !inServiceEntry {
		switch {
		case addr == "" && we.GetNetwork() == "":
			c.errorf(p.Field("address"), "missing; a WorkloadEntry needs an address (IP, DNS name or unix://path) or a network")
		case addr != "" && !isIP(addr) && !strings.HasPrefix(addr, "unix://"):
			c.checkFQDN(p.Field("address"), addr, false)
		}
	} else if addr != "" && !isIP(addr) && !strings.HasPrefix(addr, "unix://") {
		c.checkFQDN(p.Field("address"), addr, false)
	}
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		c.checkUnixPath(p.Field("address"), path)
		if len(we.GetPorts()) > 0 {
			c.errorf(p.Field("ports"), "a unix:// address takes no ports")
		}
	}
	if !inServiceEntry && addr == "" && we.GetNetwork() != "" {
		c.warnf(p.Field("address"), "unset: Istio reaches the workload through network %q's east-west gateway, which Trellis does not have yet, so it gets no endpoint (docs/multicluster.md)", we.GetNetwork())
	}
	for _, name := range sortedKeys(we.GetPorts()) {
		c.checkPortName(p.Field("ports").Key(name), name)
		c.checkPort(p.Field("ports").Key(name), we.GetPorts()[name])
	}
	c.checkLabels(p.Field("labels"), we.GetLabels())
	if sa := we.GetServiceAccount(); sa != "" && !dnsLabelRE.MatchString(strings.ReplaceAll(sa, ".", "-")) {
		c.errorf(p.Field("serviceAccount"), "%q is not a valid service account name", sa)
	}
	if loc := we.GetLocality(); loc != "" && strings.Count(loc, "/") > 2 {
		c.errorf(p.Field("locality"), "%q has too many parts; want region/zone/subzone", loc)
	}
}

func (c *checker) workloadGroup(wg *networking.WorkloadGroup) {
	spec := Path("spec")
	if md := wg.GetMetadata(); md != nil {
		c.checkLabels(spec.Field("metadata").Field("labels"), md.GetLabels())
	}
	if wg.GetTemplate() == nil {
		c.errorf(spec.Field("template"), "missing; a WorkloadGroup needs a template (labels, serviceAccount, ports)")
	} else {
		t := wg.GetTemplate()
		tp := spec.Field("template")
		if t.GetAddress() != "" {
			c.errorf(tp.Field("address"), "not allowed in a template; each workload reports its own address")
		}
		for _, name := range sortedKeys(t.GetPorts()) {
			c.checkPort(tp.Field("ports").Key(name), t.GetPorts()[name])
		}
		c.checkLabels(tp.Field("labels"), t.GetLabels())
	}
	if pr := wg.GetProbe(); pr != nil {
		pp := spec.Field("probe")
		n := 0
		if h := pr.GetHttpGet(); h != nil {
			n++
			c.checkPort(pp.Field("httpGet").Field("port"), h.GetPort())
			for i, hh := range h.GetHttpHeaders() {
				if !probeHeaderRE.MatchString(hh.GetName()) {
					c.errorf(pp.Field("httpGet").Field("httpHeaders").Index(i).Field("name"), "%q is not a probe header name; want letters, digits and '-'", hh.GetName())
				}
			}
			if s := h.GetScheme(); s != "" && !strings.EqualFold(s, "http") && !strings.EqualFold(s, "https") {
				c.errorf(pp.Field("httpGet").Field("scheme"), "%q is not allowed; want HTTP or HTTPS", s)
			}
		}
		if t := pr.GetTcpSocket(); t != nil {
			n++
			c.checkPort(pp.Field("tcpSocket").Field("port"), t.GetPort())
		}
		if e := pr.GetExec(); e != nil {
			n++
			if len(e.GetCommand()) == 0 {
				c.errorf(pp.Field("exec").Field("command"), "missing; exec needs a command")
			}
		}
		if g := pr.GetGrpc(); g != nil {
			n++
			c.checkPort(pp.Field("grpc").Field("port"), g.GetPort())
		}
		if n == 0 {
			c.errorf(pp, "needs one of httpGet, tcpSocket, exec or grpc")
		}
		for _, f := range []struct {
			name string
			v    int32
		}{
			{"initialDelaySeconds", pr.GetInitialDelaySeconds()}, {"timeoutSeconds", pr.GetTimeoutSeconds()},
			{"periodSeconds", pr.GetPeriodSeconds()}, {"successThreshold", pr.GetSuccessThreshold()},
			{"failureThreshold", pr.GetFailureThreshold()},
		} {
			if f.v < 0 {
				c.errorf(pp.Field(f.name), "%d must be zero or more", f.v)
			}
		}
	}
}

// probeHeaderRE is the header name a readiness probe may send (as in
// Kubernetes probes).
var probeHeaderRE = regexp.MustCompile(`^[-A-Za-z0-9]+$`)

func (c *checker) sidecar(sc *networking.Sidecar) {
	spec := Path("spec")
	if len(sc.GetEgress()) == 0 && len(sc.GetIngress()) == 0 && sc.GetOutboundTrafficPolicy() == nil && sc.GetInboundConnectionPool() == nil {
		c.errorf(spec, "empty Sidecar; set egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
	}
	if ws := sc.GetWorkloadSelector(); ws != nil {
		if len(ws.GetLabels()) == 0 {
			c.warnf(spec.Field("workloadSelector").Field("labels"), "missing, so the Sidecar applies to every workload in the namespace; add labels, or remove the selector to say so")
		}
		c.checkLabels(spec.Field("workloadSelector").Field("labels"), ws.GetLabels())
	}
	ingressPorts := map[uint32]int{}
	for i, in := range sc.GetIngress() {
		p := spec.Field("ingress").Index(i)
		proto := ""
		if in.GetPort() == nil {
			c.errorf(p.Field("port"), "missing; an ingress listener needs port.number and port.protocol")
		} else {
			n := in.GetPort().GetNumber()
			c.sidecarPort(p.Field("port"), in.GetPort())
			c.checkPort(p.Field("port").Field("number"), n)
			if j, dup := ingressPorts[n]; dup {
				c.errorf(p.Field("port").Field("number"), "port %d is already used by ingress[%d]", n, j)
			}
			ingressPorts[n] = i
			proto = strings.ToUpper(in.GetPort().GetProtocol())
		}
		c.checkBindAddress(p.Field("bind"), in.GetBind())
		c.checkDefaultEndpoint(p.Field("defaultEndpoint"), in.GetDefaultEndpoint())
		c.connectionPool(p.Field("connectionPool"), in.GetConnectionPool())
		if t := in.GetTls(); t != nil {
			tp := p.Field("tls")
			if proto != "HTTPS" && proto != "TLS" {
				c.errorf(tp, "an ingress listener with protocol %s takes no tls settings; use protocol HTTPS or TLS", protocolName(proto))
			}
			// The sidecar terminates TLS with files mounted into the pod.
			for _, f := range []struct {
				name string
				set  bool
			}{
				{"subjectAltNames", len(t.GetSubjectAltNames()) > 0}, {"httpsRedirect", t.GetHttpsRedirect()},
				{"credentialName", t.GetCredentialName() != ""}, {"credentialNames", len(t.GetCredentialNames()) > 0},
				{"tlsCertificates", len(t.GetTlsCertificates()) > 0},
			} {
				if f.set {
					c.errorf(tp.Field(f.name), "not supported on a Sidecar ingress listener; use serverCertificate, privateKey and caCertificates files")
				}
			}
			if m := t.GetMode(); m == networking.ServerTLSSettings_ISTIO_MUTUAL || m == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				c.errorf(tp.Field("mode"), "%s is not allowed on a Sidecar ingress listener; want SIMPLE, MUTUAL, OPTIONAL_MUTUAL or PASSTHROUGH", m)
			}
			if proto == "HTTPS" || proto == "TLS" {
				c.serverTLS(tp, t, proto)
			}
		}
	}
	catchAll := -1
	egressPorts := map[uint32]int{}
	socketBinds := map[string]int{}
	for i, eg := range sc.GetEgress() {
		p := spec.Field("egress").Index(i)
		if eg.GetPort() == nil {
			if catchAll >= 0 {
				c.errorf(p, "only one egress listener may omit the port (egress[%d] already does)", catchAll)
			}
			catchAll = i
		} else {
			n := eg.GetPort().GetNumber()
			pp := p.Field("port")
			c.sidecarPort(pp, eg.GetPort())
			if n == 0 {
				// Port 0 means a listener on a unix socket.
				switch {
				case !strings.HasPrefix(eg.GetBind(), "unix://"):
					c.errorf(pp.Field("number"), "port 0 needs bind to be a unix:// socket; set a port number 1-65535 or bind to unix:///path")
				case eg.GetCaptureMode() != networking.CaptureMode_DEFAULT && eg.GetCaptureMode() != networking.CaptureMode_NONE:
					c.errorf(p.Field("captureMode"), "a unix socket listener cannot capture traffic; want DEFAULT or NONE")
				}
				if j, dup := socketBinds[eg.GetBind()]; dup {
					c.errorf(p.Field("bind"), "socket %q is already used by egress[%d]", eg.GetBind(), j)
				}
				socketBinds[eg.GetBind()] = i
			} else {
				c.checkPort(pp.Field("number"), n)
				if j, dup := egressPorts[n]; dup {
					c.errorf(pp.Field("number"), "port %d is already used by egress[%d]", n, j)
				}
				egressPorts[n] = i
			}
			if catchAll >= 0 {
				c.errorf(p, "the egress listener without a port (egress[%d]) must be the last one", catchAll)
			}
		}
		if len(eg.GetHosts()) == 0 {
			c.errorf(p.Field("hosts"), "missing; an egress listener needs hosts such as \"./*\" or \"istio-system/*\"")
		}
		for j, h := range eg.GetHosts() {
			c.checkNamespacedHost(p.Field("hosts").Index(j), h, true)
		}
		c.warnRepeatedEgressHosts(p.Field("hosts"), eg.GetHosts())
		c.checkBindAddress(p.Field("bind"), eg.GetBind())
	}
	if otp := sc.GetOutboundTrafficPolicy(); otp != nil && otp.GetEgressProxy() != nil {
		op := spec.Field("outboundTrafficPolicy")
		if otp.GetMode() != networking.OutboundTrafficPolicy_ALLOW_ANY {
			c.errorf(op.Field("egressProxy"), "needs mode ALLOW_ANY")
		}
		c.destination(op.Field("egressProxy"), otp.GetEgressProxy())
		if otp.GetEgressProxy().GetPort() == nil {
			c.errorf(op.Field("egressProxy").Field("port"), "missing; name the egress proxy's port.number")
		}
	}
	c.connectionPool(spec.Field("inboundConnectionPool"), sc.GetInboundConnectionPool())
}

// sidecarPort checks what a Sidecar listener port says besides its number:
// targetPort (meaningless here), the name and the protocol.
func (c *checker) sidecarPort(p Path, sp *networking.SidecarPort) {
	if sp.GetTargetPort() != 0 {
		c.errorf(p.Field("targetPort"), "has no effect on a Sidecar listener; remove it")
	}
	if sp.GetName() != "" {
		c.checkPortName(p.Field("name"), sp.GetName())
	}
	c.checkProtocol(p.Field("protocol"), sp.GetProtocol(), false)
}

// warnRepeatedEgressHosts warns about egress hosts an earlier host of the
// same listener already selects ("ns/a" twice, "ns/a" after "ns/*"), and
// about "*/*" next to other hosts, which it already covers.
func (c *checker) warnRepeatedEgressHosts(p Path, hosts []string) {
	byNS := map[string]map[string]bool{}
	for i, h := range hosts {
		ns, host, found := strings.Cut(h, "/")
		if !found || strings.HasPrefix(ns, "~") {
			continue
		}
		if ns == "." {
			ns = c.r.Namespace
		}
		if byNS[ns] == nil {
			byNS[ns] = map[string]bool{}
		}
		seen := byNS[ns]
		if seen[host] || seen["*"] || (host == "*" && len(seen) > 0) {
			c.warnf(p.Index(i), "%q repeats a host this listener already selects in namespace %q", h, ns)
		}
		seen[host] = true
	}
	if byNS["*"]["*"] && len(byNS) > 1 {
		c.warnf(p, "\"*/*\" already selects every host; the other entries add nothing")
	}
}
