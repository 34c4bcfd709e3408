package validate

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func (c *checker) destinationRule(dr *networking.DestinationRule) {
	spec := Path("spec")
	if dr.GetHost() == "" {
		c.errorf(spec.Field("host"), "missing; name the service the rule applies to, such as reviews or *.example.com")
	} else if !isIP(dr.GetHost()) {
		c.checkFQDN(spec.Field("host"), dr.GetHost(), true)
	}
	c.trafficPolicy(spec.Field("trafficPolicy"), dr.GetTrafficPolicy(), true)
	seen := map[string]int{}
	for i, s := range dr.GetSubsets() {
		p := spec.Field("subsets").Index(i)
		if s.GetName() == "" {
			c.errorf(p.Field("name"), "missing; every subset needs a name")
		} else {
			c.checkSubsetName(p.Field("name"), s.GetName())
			if j, dup := seen[s.GetName()]; dup {
				c.errorf(p.Field("name"), "duplicate subset name %q (also subsets[%d]); subset names must be unique", s.GetName(), j)
			}
			seen[s.GetName()] = i
		}
		c.checkLabels(p.Field("labels"), s.GetLabels())
		c.trafficPolicy(p.Field("trafficPolicy"), s.GetTrafficPolicy(), true)
	}
	c.checkExportTo(spec.Field("exportTo"), dr.GetExportTo(), false, dr.GetWorkloadSelector() != nil)
	if ws := dr.GetWorkloadSelector(); ws != nil {
		c.checkLabels(spec.Field("workloadSelector").Field("matchLabels"), ws.GetMatchLabels())
	}
}

func (c *checker) trafficPolicy(p Path, tp *networking.TrafficPolicy, portLevel bool) {
	if tp == nil {
		return
	}
	if tp.GetLoadBalancer() == nil && tp.GetConnectionPool() == nil && tp.GetOutlierDetection() == nil && tp.GetTls() == nil &&
		len(tp.GetPortLevelSettings()) == 0 && tp.GetTunnel() == nil && tp.GetProxyProtocol() == nil && tp.GetRetryBudget() == nil {
		c.errorf(p, "empty; set at least one of loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel, proxyProtocol or retryBudget, or remove it")
	}
	if tp.GetTunnel() != nil && tp.GetProxyProtocol() != nil {
		c.errorf(p.Field("proxyProtocol"), "cannot be set together with tunnel; choose one")
	}
	c.loadBalancer(p.Field("loadBalancer"), tp.GetLoadBalancer())
	c.connectionPool(p.Field("connectionPool"), tp.GetConnectionPool())
	c.outlierDetection(p.Field("outlierDetection"), tp.GetOutlierDetection())
	c.clientTLS(p.Field("tls"), tp.GetTls())
	if t := tp.GetTunnel(); t != nil {
		tpp := p.Field("tunnel")
		if t.GetTargetHost() == "" {
			c.errorf(tpp.Field("targetHost"), "missing; name the host to tunnel to")
		} else if !isIP(t.GetTargetHost()) {
			c.checkFQDN(tpp.Field("targetHost"), t.GetTargetHost(), false)
		}
		c.checkPort(tpp.Field("targetPort"), t.GetTargetPort())
		if pr := t.GetProtocol(); pr != "" && pr != "CONNECT" && pr != "POST" {
			c.errorf(tpp.Field("protocol"), "%q is not allowed; want CONNECT or POST", pr)
		}
	}
	if rb := tp.GetRetryBudget(); rb != nil && rb.GetPercent() != nil {
		c.checkPercent(p.Field("retryBudget").Field("percent"), rb.GetPercent().GetValue())
	}
	if len(tp.GetPortLevelSettings()) > 0 && !portLevel {
		c.errorf(p.Field("portLevelSettings"), "not allowed here")
	}
	ports := map[uint32]int{}
	for i, pl := range tp.GetPortLevelSettings() {
		pp := p.Field("portLevelSettings").Index(i)
		if pl.GetPort() == nil {
			c.errorf(pp.Field("port"), "missing; port-level settings need port.number")
		} else {
			n := pl.GetPort().GetNumber()
			c.checkPort(pp.Field("port").Field("number"), n)
			if j, dup := ports[n]; dup {
				c.errorf(pp.Field("port").Field("number"), "port %d already has settings at portLevelSettings[%d]", n, j)
			}
			ports[n] = i
		}
		if pl.GetLoadBalancer() == nil && pl.GetConnectionPool() == nil && pl.GetOutlierDetection() == nil && pl.GetTls() == nil {
			c.errorf(pp, "no settings for port; set at least one of loadBalancer, connectionPool, outlierDetection or tls")
		}
		c.loadBalancer(pp.Field("loadBalancer"), pl.GetLoadBalancer())
		c.connectionPool(pp.Field("connectionPool"), pl.GetConnectionPool())
		c.outlierDetection(pp.Field("outlierDetection"), pl.GetOutlierDetection())
		c.clientTLS(pp.Field("tls"), pl.GetTls())
	}
}

func (c *checker) loadBalancer(p Path, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.Field("consistentHash")
		switch k := ch.GetHashKey().(type) {
		case nil:
			c.errorf(cp, "needs a hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			if k.HttpHeaderName == "" {
				c.errorf(cp.Field("httpHeaderName"), "empty header name")
			} else {
				c.checkHeaderName(cp.Field("httpHeaderName"), k.HttpHeaderName)
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			if k.HttpCookie.GetName() == "" {
				c.errorf(cp.Field("httpCookie").Field("name"), "missing; name the cookie to hash on")
			}
			if k.HttpCookie.GetTtl() != nil && k.HttpCookie.GetTtl().AsDuration() != 0 {
				c.checkDuration(cp.Field("httpCookie").Field("ttl"), k.HttpCookie.GetTtl())
			}
			attrs := map[string]int{}
			for i, a := range k.HttpCookie.GetAttributes() {
				ap := cp.Field("httpCookie").Field("attributes").Index(i).Field("name")
				if a.GetName() == "" {
					c.errorf(ap, "missing; name the cookie attribute, such as SameSite")
					continue
				}
				if j, dup := attrs[a.GetName()]; dup {
					c.errorf(ap, "cookie attribute %q is already set by attributes[%d]", a.GetName(), j)
				}
				attrs[a.GetName()] = i
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			if k.HttpQueryParameterName == "" {
				c.errorf(cp.Field("httpQueryParameterName"), "empty query parameter name")
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			if !k.UseSourceIp {
				c.warnf(cp.Field("useSourceIp"), "false selects no hash key; set it to true or choose another key")
			}
		}
		if ch.GetMinimumRingSize() != 0 && ch.GetHashAlgorithm() == nil {
			c.warnf(cp.Field("minimumRingSize"), "deprecated; use ringHash.minimumRingSize")
		}
		if ch.GetMinimumRingSize() != 0 && ch.GetHashAlgorithm() != nil {
			c.errorf(cp.Field("minimumRingSize"), "deprecated field set together with ringHash or maglev; use ringHash.minimumRingSize or maglev.tableSize only")
		}
		if mg := ch.GetMaglev(); mg != nil {
			tp := cp.Field("maglev").Field("tableSize")
			switch n := mg.GetTableSize(); {
			case n == 0:
				c.errorf(tp, "missing; maglev needs a prime tableSize below %d, such as 65537", maxMaglevTable)
			case n >= maxMaglevTable:
				c.errorf(tp, "%d is too large; the Maglev table size must be below %d", n, maxMaglevTable)
			case !isPrime(n):
				c.errorf(tp, "%d is not a prime number; Maglev needs a prime table size such as 65537", n)
			}
		}
	}
	if lb.GetLocalityLbSetting() != nil && lb.GetZoneAwareLbSetting() != nil {
		c.errorf(p.Field("zoneAwareLbSetting"), "cannot be set together with localityLbSetting; choose one")
	}
	if l := lb.GetLocalityLbSetting(); l != nil {
		lp := p.Field("localityLbSetting")
		if len(l.GetDistribute()) > 0 && len(l.GetFailover()) > 0 {
			c.errorf(lp, "distribute and failover are exclusive; set only one")
		}
		if len(l.GetFailover()) > 0 {
			for i, label := range l.GetFailoverPriority() {
				if topologyLabels[label] {
					c.errorf(lp.Field("failoverPriority").Index(i), "%q cannot be used together with failover; failover already orders regions", label)
				}
			}
		}
		var froms []string
		for i, d := range l.GetDistribute() {
			dp := lp.Field("distribute").Index(i)
			if d.GetFrom() == "" {
				c.errorf(dp.Field("from"), "missing; name the source locality region/zone/subzone")
			} else {
				c.checkLocality(dp.Field("from"), d.GetFrom())
				froms = append(froms, d.GetFrom())
			}
			var sum uint32
			for _, to := range sortedKeys(d.GetTo()) {
				w := d.GetTo()[to]
				c.checkLocality(dp.Field("to").Key(to), to)
				if w < 1 || w > 100 {
					c.errorf(dp.Field("to").Key(to), "weight %d must be between 1 and 100", w)
				}
				sum += w
			}
			if sum != 100 {
				c.errorf(dp.Field("to"), "weights add up to %d; they must add up to 100", sum)
			}
		}
		for i, from := range froms {
			for j := 0; j < i; j++ {
				if localityCovers(froms[j], from) || localityCovers(from, froms[j]) {
					c.errorf(lp.Field("distribute").Index(i).Field("from"), "locality %q overlaps %q of an earlier distribute entry", from, froms[j])
					break
				}
			}
		}
		for i, f := range l.GetFailover() {
			c.checkFailover(lp.Field("failover").Index(i), f.GetFrom(), f.GetTo())
		}
	}
	if z := lb.GetZoneAwareLbSetting(); z != nil {
		zp := p.Field("zoneAwareLbSetting")
		for i, label := range z.GetFailoverPriority() {
			if topologyLabels[label] {
				c.errorf(zp.Field("failoverPriority").Index(i), "%q is not allowed; zone-aware balancing already prefers the same region, zone and subzone", label)
			}
		}
		for i, f := range z.GetFailover() {
			c.checkFailover(zp.Field("failover").Index(i), f.GetFrom(), f.GetTo())
		}
	}
	c.checkDuration(p.Field("warmupDurationSecs"), lb.GetWarmupDurationSecs())
	if w := lb.GetWarmup(); w != nil {
		if w.GetDuration() == nil {
			c.errorf(p.Field("warmup").Field("duration"), "missing; name how long a new endpoint warms up, such as 60s")
		}
		if ag := w.GetAggression(); ag != nil && ag.GetValue() <= 0 {
			c.errorf(p.Field("warmup").Field("aggression"), "%v must be above 0 (1 ramps traffic up linearly)", ag.GetValue())
		}
		c.checkDuration(p.Field("warmup").Field("duration"), w.GetDuration())
		if mp := w.GetMinimumPercent(); mp != nil {
			c.checkPercent(p.Field("warmup").Field("minimumPercent"), mp.GetValue())
		}
	}
}

// topologyLabels are the node labels failover already follows.
var topologyLabels = map[string]bool{
	"topology.kubernetes.io/region": true,
	"topology.kubernetes.io/zone":   true,
	"topology.istio.io/subzone":     true,
}

// checkLocality checks "region", "region/zone" or "region/zone/subzone",
// where the last part alone may be "*".
func (c *checker) checkLocality(p Path, loc string) {
	if n := strings.Count(loc, "*"); n > 1 || (n == 1 && !strings.HasSuffix(loc, "*")) {
		c.errorf(p, "locality %q may hold one '*' only, as its last part (us-east/*)", loc)
		return
	}
	for _, part := range strings.SplitN(loc, "/", 3) {
		if part == "" {
			c.errorf(p, "locality %q has an empty part; want region, region/zone or region/zone/subzone", loc)
			return
		}
	}
}

// localityCovers reports whether locality a ("us", "us/a", "us/*") includes b.
func localityCovers(a, b string) bool {
	a = strings.TrimSuffix(strings.TrimSuffix(a, "*"), "/")
	b = strings.TrimSuffix(strings.TrimSuffix(b, "*"), "/")
	return a == "" || a == b || strings.HasPrefix(b, a+"/")
}

func (c *checker) checkFailover(p Path, from, to string) {
	switch {
	case from == "" || to == "":
		c.errorf(p, "needs both from and to regions")
	case from == to:
		c.errorf(p, "from and to are the same region %q", from)
	case strings.Contains(from, "/") || strings.Contains(to, "/"):
		c.errorf(p, "failover names regions only (such as us-east), not region/zone")
	case strings.Contains(from, "*") || strings.Contains(to, "*"):
		c.errorf(p, "failover regions cannot contain '*'; name each region")
	}
}

// maxMaglevTable is Envoy's largest Maglev table size.
const maxMaglevTable = 5000011

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func (c *checker) connectionPool(p Path, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.GetTcp() == nil && cp.GetHttp() == nil {
		c.errorf(p, "empty; set tcp or http settings, or remove it")
	}
	nonNeg := func(fp Path, v int32) {
		if v < 0 {
			c.errorf(fp, "%d must be zero (unset) or more", v)
		}
	}
	if t := cp.GetTcp(); t != nil {
		tp := p.Field("tcp")
		nonNeg(tp.Field("maxConnections"), t.GetMaxConnections())
		c.checkDuration(tp.Field("connectTimeout"), t.GetConnectTimeout())
		c.checkDuration(tp.Field("maxConnectionDuration"), t.GetMaxConnectionDuration())
		if t.GetIdleTimeout().AsDuration() != 0 {
			// "0s" turns the idle timeout off.
			c.checkDuration(tp.Field("idleTimeout"), t.GetIdleTimeout())
		}
		if ka := t.GetTcpKeepalive(); ka != nil {
			c.checkDuration(tp.Field("tcpKeepalive").Field("time"), ka.GetTime())
			c.checkDuration(tp.Field("tcpKeepalive").Field("interval"), ka.GetInterval())
		}
	}
	if h := cp.GetHttp(); h != nil {
		hp := p.Field("http")
		nonNeg(hp.Field("http1MaxPendingRequests"), h.GetHttp1MaxPendingRequests())
		nonNeg(hp.Field("http2MaxRequests"), h.GetHttp2MaxRequests())
		nonNeg(hp.Field("maxRequestsPerConnection"), h.GetMaxRequestsPerConnection())
		nonNeg(hp.Field("maxRetries"), h.GetMaxRetries())
		nonNeg(hp.Field("maxConcurrentStreams"), h.GetMaxConcurrentStreams())
		c.checkDuration(hp.Field("idleTimeout"), h.GetIdleTimeout())
		if h.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.GetUseClientProtocol() {
			c.errorf(hp.Field("useClientProtocol"), "cannot be true with h2UpgradePolicy UPGRADE; either follow the client's protocol or upgrade to HTTP/2")
		}
		if ka := h.GetHttp2KeepAlive(); ka != nil {
			kp := hp.Field("http2KeepAlive")
			if ka.GetInterval() == nil {
				c.errorf(kp.Field("interval"), "missing; name how often to send HTTP/2 PINGs, such as 30s")
			}
			if ka.GetTimeout() == nil {
				c.errorf(kp.Field("timeout"), "missing; name how long to wait for a PING answer, such as 5s")
			}
			c.checkDuration(kp.Field("interval"), ka.GetInterval())
			c.checkDuration(kp.Field("timeout"), ka.GetTimeout())
		}
	}
}

func (c *checker) outlierDetection(p Path, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	if od.GetConsecutiveErrors() < 0 {
		c.errorf(p.Field("consecutiveErrors"), "%d must be zero or more", od.GetConsecutiveErrors())
	} else if od.GetConsecutiveErrors() > 0 {
		c.warnf(p.Field("consecutiveErrors"), "deprecated; use consecutive5xxErrors or consecutiveGatewayErrors")
	}
	c.checkDuration(p.Field("interval"), od.GetInterval())
	c.checkDuration(p.Field("baseEjectionTime"), od.GetBaseEjectionTime())
	if v := od.GetMaxEjectionPercent(); v < 0 || v > 100 {
		c.errorf(p.Field("maxEjectionPercent"), "%d must be between 0 and 100", v)
	}
	if v := od.GetMinHealthPercent(); v < 0 || v > 100 {
		c.errorf(p.Field("minHealthPercent"), "%d must be between 0 and 100", v)
	}
	if od.GetConsecutiveLocalOriginFailures() != nil && !od.GetSplitExternalLocalOriginErrors() {
		c.errorf(p.Field("consecutiveLocalOriginFailures"), "needs splitExternalLocalOriginErrors: true")
	}
	for i, code := range od.GetOutlierDetectionHttpErrorCodes() {
		if code < 100 || code > 599 {
			c.errorf(p.Field("outlierDetectionHttpErrorCodes").Index(i), "%d is not an HTTP status code (100-599)", code)
		}
	}
}

func (c *checker) clientTLS(p Path, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	switch t.GetMode() {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" || t.GetCredentialName() != "" {
			c.errorf(p, "mode ISTIO_MUTUAL uses the mesh's certificates; remove clientCertificate, privateKey, caCertificates and credentialName")
		}
	case networking.ClientTLSSettings_MUTUAL:
		if t.GetCredentialName() == "" {
			if t.GetClientCertificate() == "" {
				c.errorf(p.Field("clientCertificate"), "missing; mode MUTUAL needs clientCertificate and privateKey, or credentialName")
			}
			if t.GetPrivateKey() == "" {
				c.errorf(p.Field("privateKey"), "missing; mode MUTUAL needs clientCertificate and privateKey, or credentialName")
			}
		}
	case networking.ClientTLSSettings_DISABLE:
		if t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCredentialName() != "" {
			c.warnf(p, "mode DISABLE ignores the certificate settings")
		}
	}
	if t.GetCredentialName() != "" && (t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" || t.GetCaCrl() != "") {
		c.errorf(p.Field("credentialName"), "cannot be set together with clientCertificate, privateKey, caCertificates or caCrl; the Secret carries them, choose one")
	}
	if t.GetInsecureSkipVerify().GetValue() {
		switch t.GetMode() {
		case networking.ClientTLSSettings_SIMPLE:
			if t.GetCaCertificates() != "" || t.GetCredentialName() != "" || len(t.GetSubjectAltNames()) > 0 {
				c.errorf(p.Field("insecureSkipVerify"), "true skips server verification, so caCertificates, credentialName and subjectAltNames would be ignored; remove them or set it to false")
			}
		case networking.ClientTLSSettings_MUTUAL:
			if t.GetCaCertificates() != "" || len(t.GetSubjectAltNames()) > 0 {
				c.errorf(p.Field("insecureSkipVerify"), "true skips server verification, so caCertificates and subjectAltNames would be ignored; remove them or set it to false")
			}
		}
	}
	for i, san := range t.GetSubjectAltNames() {
		if san == "" {
			c.errorf(p.Field("subjectAltNames").Index(i), "empty subject alternative name")
		}
	}
}
