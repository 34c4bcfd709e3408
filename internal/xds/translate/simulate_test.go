package translate

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// The traffic simulator walks generated config the way Envoy would for
// one request: listener (by original destination, or bound port for a
// gateway) -> filter chain (destination port, SNI) -> HTTP connection
// manager -> route configuration -> virtual host (by Host) -> first
// matching route -> action. It reports what the proxy would do, so tests
// can say "GET bill-service:9999/ from front-tomcat goes 90/10 to v1/v2".

type simRequest struct {
	dstIP   string // original destination IP; "" resolves the Host's VIP from the input's registry
	port    uint32
	host    string // Host header; the ":port" form is used as written
	sni     string // TLS server name, for gateway HTTPS/TLS listeners
	raw     bool   // the bytes are not HTTP (for sniffed listeners)
	method  string
	path    string
	headers map[string]string
}

// simulate returns a one-line description of what happens:
//
//	"listener L -> route R/VH/ROUTE -> cluster C" (or "clusters A:90 B:10")
//	plus " rewrite=/x", " host=h", " mirror=C@100%", " delay=5s@100%",
//	" abort=500@50%"; "direct 404" / "redirect 301 ..." / "tcp C";
//	"no listener", "no filter chain", "no virtual host (404)", "no route (404)".
func simulate(t *testing.T, in Input, out *Output, req simRequest) string {
	t.Helper()
	if req.method == "" {
		req.method = "GET"
	}
	if req.path == "" {
		req.path = "/"
	}
	if req.dstIP == "" && in.Proxy.Type == SidecarProxy {
		host, _, _ := strings.Cut(req.host, ":")
		req.dstIP = vipOf(in, host)
	}
	l := pickListener(in, out, req)
	if l == nil {
		return "no listener"
	}
	fc := pickChain(l, req)
	if fc == nil {
		return "listener " + l.GetName() + " -> no filter chain"
	}
	prefix := "listener " + l.GetName() + " -> "
	for _, f := range fc.GetFilters() {
		if tp := tcpProxyOf(t, f); tp != nil {
			if c := tp.GetCluster(); c != "" {
				return prefix + "tcp " + c
			}
			var parts []string
			for _, wc := range tp.GetWeightedClusters().GetClusters() {
				parts = append(parts, fmt.Sprintf("%s:%d", wc.GetName(), wc.GetWeight()))
			}
			return prefix + "tcp " + strings.Join(parts, " ")
		}
		if h := hcmOf(t, f); h != nil {
			rc := h.GetRouteConfig()
			if rc == nil {
				for _, r := range out.Routes {
					if r.GetName() == h.GetRds().GetRouteConfigName() {
						rc = r
					}
				}
			}
			if rc == nil {
				return prefix + "missing route config " + h.GetRds().GetRouteConfigName()
			}
			return prefix + simulateHTTP(t, rc, req)
		}
	}
	return prefix + "no filter"
}

func vipOf(in Input, host string) string {
	for _, svc := range in.Registry.Services {
		if len(svc.Addresses) == 0 {
			continue
		}
		if host == svc.Hostname || host == svc.Name || host == svc.Name+"."+svc.Namespace || host == svc.Name+"."+svc.Namespace+".svc" {
			if host == svc.Name && svc.Namespace != in.Proxy.Namespace {
				continue
			}
			return svc.Addresses[0]
		}
	}
	return "192.0.2.1" // somewhere outside the mesh (TEST-NET-1; never dialled)
}

func pickListener(in Input, out *Output, req simRequest) *listenerv3.Listener {
	var wildcard, capture *listenerv3.Listener
	for _, l := range out.Listeners {
		sa := l.GetAddress().GetSocketAddress()
		if in.Proxy.Type == RouterProxy {
			if sa.GetPortValue() == req.port && l.GetBindToPort() == nil {
				return l
			}
			continue
		}
		switch {
		case l.GetName() == VirtualOutboundListener:
			capture = l
		case sa.GetPortValue() != req.port:
		case sa.GetAddress() == req.dstIP:
			return l
		case sa.GetAddress() == "0.0.0.0":
			wildcard = l
		}
	}
	if wildcard != nil {
		return wildcard
	}
	return capture
}

func pickChain(l *listenerv3.Listener, req simRequest) *listenerv3.FilterChain {
	var fallback *listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		if p := m.GetDestinationPort(); p != nil && p.GetValue() != req.port {
			continue
		}
		if rs := m.GetPrefixRanges(); len(rs) > 0 {
			ip, err := netip.ParseAddr(req.dstIP)
			in := false
			for _, r := range rs {
				p, perr := netip.ParseAddr(r.GetAddressPrefix())
				if err == nil && perr == nil {
					pfx, _ := p.Prefix(int(r.GetPrefixLen().GetValue()))
					in = in || pfx.Contains(ip)
				}
			}
			if !in {
				continue
			}
			return fc
		}
		if len(m.GetApplicationProtocols()) > 0 {
			if req.raw || req.sni != "" {
				continue
			}
			return fc // http_inspector saw HTTP/1.1
		}
		if names := m.GetServerNames(); len(names) > 0 {
			for _, n := range names {
				if n == req.sni || (strings.HasPrefix(n, "*") && strings.HasSuffix(req.sni, n[1:])) {
					return fc
				}
			}
			continue
		}
		if fallback == nil {
			fallback = fc
		}
	}
	return fallback
}

func simulateHTTP(t *testing.T, rc *routev3.RouteConfiguration, req simRequest) string {
	vh := pickVirtualHost(rc, strings.ToLower(req.host))
	if vh == nil {
		return "route " + rc.GetName() + " -> no virtual host (404)"
	}
	where := "route " + rc.GetName() + "/" + vh.GetName()
	for _, r := range vh.GetRoutes() {
		if !routeMatches(t, r.GetMatch(), req) {
			continue
		}
		return where + "/" + r.GetName() + " -> " + describeAction(t, r)
	}
	return where + " -> no route (404)"
}

func pickVirtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	var best *routev3.VirtualHost
	bestScore := -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			score := -1
			switch {
			case d == host:
				score = 1 << 20
			case d == "*":
				score = 0
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]):
				score = 1<<19 + len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]):
				score = 1<<18 + len(d)
			}
			if score > bestScore {
				best, bestScore = vh, score
			}
		}
	}
	return best
}

func routeMatches(t *testing.T, m *routev3.RouteMatch, req simRequest) bool {
	path, query, _ := strings.Cut(req.path, "?")
	p := path
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	switch {
	case m.GetPath() != "":
		if cs && p != m.GetPath() || !cs && !strings.EqualFold(p, m.GetPath()) {
			return false
		}
	case m.GetSafeRegex() != nil:
		if !fullMatch(t, m.GetSafeRegex().GetRegex(), p) {
			return false
		}
	default:
		pre := m.GetPrefix()
		if !cs {
			pre, p = strings.ToLower(pre), strings.ToLower(p)
		}
		if !strings.HasPrefix(p, pre) {
			return false
		}
	}
	headers := map[string]string{":method": req.method, ":authority": req.host, ":path": req.path, ":scheme": "http"}
	for k, v := range req.headers {
		headers[strings.ToLower(k)] = v
	}
	for _, hm := range m.GetHeaders() {
		v, ok := headers[hm.GetName()]
		var got bool
		if hm.GetPresentMatch() {
			got = ok
		} else {
			got = ok && stringMatches(t, hm.GetStringMatch(), v)
		}
		if got == hm.GetInvertMatch() {
			return false
		}
	}
	qs, _ := url.ParseQuery(query)
	for _, qm := range m.GetQueryParameters() {
		vals, ok := qs[qm.GetName()]
		if !ok {
			return false
		}
		if qm.GetStringMatch() != nil && !stringMatches(t, qm.GetStringMatch(), vals[0]) {
			return false
		}
	}
	return true
}

func stringMatches(t *testing.T, sm *matcherv3.StringMatcher, v string) bool {
	if sm.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(t, p.SafeRegex.GetRegex(), v)
	}
	return false
}

func fullMatch(t *testing.T, re, v string) bool {
	r, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		t.Fatalf("regex %q: %v", re, err)
	}
	return r.MatchString(v)
}

func describeAction(t *testing.T, r *routev3.Route) string {
	var b strings.Builder
	switch a := r.GetAction().(type) {
	case *routev3.Route_DirectResponse:
		fmt.Fprintf(&b, "direct %d", a.DirectResponse.GetStatus())
		if body := a.DirectResponse.GetBody().GetInlineString(); body != "" {
			fmt.Fprintf(&b, " %q", body)
		}
	case *routev3.Route_Redirect:
		rd := a.Redirect
		fmt.Fprintf(&b, "redirect %s", rd.GetResponseCode())
		if rd.GetSchemeRedirect() != "" {
			fmt.Fprintf(&b, " scheme=%s", rd.GetSchemeRedirect())
		}
		if rd.GetHostRedirect() != "" {
			fmt.Fprintf(&b, " host=%s", rd.GetHostRedirect())
		}
		if rd.GetPortRedirect() != 0 {
			fmt.Fprintf(&b, " port=%d", rd.GetPortRedirect())
		}
		if rd.GetPathRedirect() != "" {
			fmt.Fprintf(&b, " path=%s", rd.GetPathRedirect())
		}
	case *routev3.Route_Route:
		ra := a.Route
		if c := ra.GetCluster(); c != "" {
			b.WriteString("cluster " + c)
		} else {
			b.WriteString("clusters")
			for _, wc := range ra.GetWeightedClusters().GetClusters() {
				fmt.Fprintf(&b, " %s:%d", wc.GetName(), wc.GetWeight().GetValue())
			}
		}
		if ra.GetPrefixRewrite() != "" {
			b.WriteString(" rewrite=" + ra.GetPrefixRewrite())
		}
		if h := ra.GetHostRewriteLiteral(); h != "" {
			b.WriteString(" host=" + h)
		}
		if to := ra.GetTimeout(); to != nil && to.AsDuration() != 0 {
			b.WriteString(" timeout=" + to.AsDuration().String())
		}
		if rp := ra.GetRetryPolicy(); rp != nil {
			fmt.Fprintf(&b, " retries=%d", rp.GetNumRetries().GetValue())
		} else {
			b.WriteString(" retries=none")
		}
		for _, m := range ra.GetRequestMirrorPolicies() {
			fmt.Fprintf(&b, " mirror=%s@%s", m.GetCluster(), pctString(m.GetRuntimeFraction().GetDefaultValue().GetNumerator()))
		}
	}
	if cfg := r.GetTypedPerFilterConfig()[FaultFilter]; cfg != nil {
		f := &faultv3.HTTPFault{}
		if err := cfg.UnmarshalTo(f); err != nil {
			t.Fatal(err)
		}
		if d := f.GetDelay(); d != nil {
			fmt.Fprintf(&b, " delay=%s@%s", d.GetFixedDelay().AsDuration(), pctString(d.GetPercentage().GetNumerator()))
		}
		if a := f.GetAbort(); a != nil {
			fmt.Fprintf(&b, " abort=%d@%s", a.GetHttpStatus(), pctString(a.GetPercentage().GetNumerator()))
		}
	}
	if _, ok := r.GetTypedPerFilterConfig()[CorsFilter]; ok {
		b.WriteString(" cors")
	}
	var hdrs []string
	for _, h := range r.GetRequestHeadersToAdd() {
		hdrs = append(hdrs, "+"+h.GetHeader().GetKey()+"="+h.GetHeader().GetValue())
	}
	for _, h := range r.GetRequestHeadersToRemove() {
		hdrs = append(hdrs, "-"+h)
	}
	sort.Strings(hdrs)
	if len(hdrs) > 0 {
		b.WriteString(" headers=" + strings.Join(hdrs, ","))
	}
	return b.String()
}

// pctString prints a per-million numerator as a percentage.
func pctString(n uint32) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.4f", float64(n)/10000), "0"), ".") + "%"
}
