package validate

import (
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
	c.checkExportTo(spec.Field("exportTo"), dr.GetExportTo())
	if ws := dr.GetWorkloadSelector(); ws != nil {
		c.checkLabels(spec.Field("workloadSelector").Field("matchLabels"), ws.GetMatchLabels())
	}
}

func (c *checker) trafficPolicy(p Path, tp *networking.TrafficPolicy, portLevel bool) {
	if tp == nil {
		return
	}
	c.loadBalancer(p.Field("loadBalancer"), tp.GetLoadBalancer())
	c.connectionPool(p.Field("connectionPool"), tp.GetConnectionPool())
	c.outlierDetection(p.Field("outlierDetection"), tp.GetOutlierDetection())
	c.clientTLS(p.Field("tls"), tp.GetTls())
	if t := tp.GetTunnel(); t != nil {
		tpp := p.Field("tunnel")
		if t.GetTargetHost() == "" {
			c.errorf(tpp.Field("targetHost"), "missing; name the host to tunnel to")
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
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			if k.HttpQueryParameterName == "" {
				c.errorf(cp.Field("httpQueryParameterName"), "empty query parameter name")
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			if !k.UseSourceIp {
				c.warnf(cp.Field("useSourceIp"), "false selects no hash key; set it to true or choose another key")
			}
		}
		if ch.GetMinimumRingSize() != 0 && ch.GetRingHash() != nil {
			c.errorf(cp.Field("minimumRingSize"), "deprecated field set together with ringHash; use ringHash.minimumRingSize only")
		}
		if mg := ch.GetMaglev(); mg != nil && mg.GetTableSize() > maxMaglevTable {
			c.errorf(cp.Field("maglev").Field("tableSize"), "%d is above the largest Maglev table size %d", mg.GetTableSize(), maxMaglevTable)
		} else if mg != nil && mg.GetTableSize() != 0 && !isPrime(mg.GetTableSize()) {
			c.errorf(cp.Field("maglev").Field("tableSize"), "%d is not a prime number; Maglev needs a prime table size such as 65537", mg.GetTableSize())
		}
	}
	if l := lb.GetLocalityLbSetting(); l != nil {
		lp := p.Field("localityLbSetting")
		if len(l.GetDistribute()) > 0 && (len(l.GetFailover()) > 0 || len(l.GetFailoverPriority()) > 0) {
			c.errorf(lp, "distribute and failover/failoverPriority are exclusive; set only one")
		}
		for i, d := range l.GetDistribute() {
			dp := lp.Field("distribute").Index(i)
			if d.GetFrom() == "" {
				c.errorf(dp.Field("from"), "missing; name the source locality region/zone/subzone")
			}
			var sum uint32
			for _, w := range d.GetTo() {
				sum += w
			}
			if sum != 100 {
				c.errorf(dp.Field("to"), "weights add up to %d; they must add up to 100", sum)
			}
		}
		for i, f := range l.GetFailover() {
			fp := lp.Field("failover").Index(i)
			if f.GetFrom() == "" || f.GetTo() == "" {
				c.errorf(fp, "needs both from and to regions")
			} else if f.GetFrom() == f.GetTo() {
				c.errorf(fp, "from and to are the same region %q", f.GetFrom())
			}
		}
	}
	c.checkDuration(p.Field("warmupDurationSecs"), lb.GetWarmupDurationSecs())
	if w := lb.GetWarmup(); w != nil {
		c.checkDuration(p.Field("warmup").Field("duration"), w.GetDuration())
		if mp := w.GetMinimumPercent(); mp != nil {
			c.checkPercent(p.Field("warmup").Field("minimumPercent"), mp.GetValue())
		}
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
		c.checkDuration(tp.Field("idleTimeout"), t.GetIdleTimeout())
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
	}
}

func (c *checker) outlierDetection(p Path, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	if od.GetConsecutiveErrors() < 0 {
		c.errorf(p.Field("consecutiveErrors"), "%d must be zero or more", od.GetConsecutiveErrors())
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
	if t.GetCredentialName() != "" && (t.GetClientCertificate() != "" || t.GetPrivateKey() != "") {
		c.errorf(p.Field("credentialName"), "cannot be set together with clientCertificate/privateKey; choose one")
	}
	for i, san := range t.GetSubjectAltNames() {
		if san == "" {
			c.errorf(p.Field("subjectAltNames").Index(i), "empty subject alternative name")
		}
	}
}
