package validate

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func (c *checker) gateway(gw *networking.Gateway) {
	spec := Path("spec")
	if strings.Contains(c.r.Name, ".") {
		// VirtualServices name gateways "ns/name" or by a dotted FQDN-style
		// name, so a dot in the name itself would be ambiguous.
		c.errorf("metadata.name", "%q is not a valid Gateway name: want a DNS-1123 label (no dots)", c.r.Name)
	}
	if len(gw.GetServers()) == 0 {
		c.errorf(spec.Field("servers"), "missing; a Gateway needs at least one server (port, hosts)")
	}
	c.checkLabels(spec.Field("selector"), gw.GetSelector())
	portNames := map[string]int{}
	for i, s := range gw.GetServers() {
		p := spec.Field("servers").Index(i)
		if s == nil {
			c.errorf(p, "empty server")
			continue
		}
		proto := ""
		if s.GetPort() == nil {
			c.errorf(p.Field("port"), "missing; a server needs port.number, port.protocol and port.name")
		} else {
			pp := p.Field("port")
			unix := strings.HasPrefix(s.GetBind(), "unix://")
			switch n := s.GetPort().GetNumber(); {
			case unix && n != 0:
				c.errorf(pp.Field("number"), "a server bound to a unix socket has no port; set number to 0 (or bind to an IP)")
			case !unix:
				c.checkPort(pp.Field("number"), n)
			}
			c.checkProtocol(pp.Field("protocol"), s.GetPort().GetProtocol(), true)
			if s.GetPort().GetTargetPort() != 0 {
				c.errorf(pp.Field("targetPort"), "has no effect on a Gateway; remove it (the gateway listens on number)")
			}
			proto = strings.ToUpper(s.GetPort().GetProtocol())
			if n := s.GetPort().GetName(); n == "" {
				c.errorf(pp.Field("name"), "missing; every server port needs a name, such as http or https-443")
			} else {
				if j, dup := portNames[n]; dup {
					c.errorf(pp.Field("name"), "port name %q is already used by servers[%d]; port names must be unique", n, j)
				}
				portNames[n] = i
			}
			if s.GetTls().GetHttpsRedirect() && !httpProtocols[proto] {
				c.warnf(p.Field("tls").Field("httpsRedirect"), "only has an effect on HTTP servers; this server's protocol is %s", proto)
			}
		}
		if len(s.GetHosts()) == 0 {
			c.errorf(p.Field("hosts"), "missing; a server needs at least one host, such as \"*\" or \"example.com\"")
		}
		for j, h := range s.GetHosts() {
			c.checkNamespacedHost(p.Field("hosts").Index(j), h, false)
		}
		c.checkBindAddress(p.Field("bind"), s.GetBind())
		c.serverTLS(p.Field("tls"), s.GetTls(), proto)
	}
}

func (c *checker) serverTLS(p Path, t *networking.ServerTLSSettings, proto string) {
	secure := proto == "HTTPS" || proto == "TLS"
	if t == nil {
		if secure {
			c.errorf(p, "missing; a server with protocol %s needs tls settings (mode SIMPLE with credentialName, or PASSTHROUGH)", proto)
		}
		return
	}
	if !secure {
		if proto == "" {
			return
		}
		// Plain-text HTTP servers may only ask for an HTTPS redirect;
		// other plain-text servers take no tls settings at all.
		if !httpProtocols[proto] {
			c.errorf(p, "a server with protocol %s takes no tls settings; use protocol TLS to terminate or pass through TLS", proto)
			return
		}
		if t.GetMode() != networking.ServerTLSSettings_PASSTHROUGH || t.GetCredentialName() != "" || t.GetServerCertificate() != "" ||
			t.GetPrivateKey() != "" || t.GetCaCertificates() != "" {
			c.errorf(p, "a server with protocol %s cannot terminate TLS; use protocol HTTPS or TLS, or keep only httpsRedirect", proto)
		}
		return
	}
	sources := 0
	for _, set := range []bool{t.GetServerCertificate() != "" && t.GetPrivateKey() != "", t.GetCredentialName() != "", len(t.GetCredentialNames()) > 0, len(t.GetTlsCertificates()) > 0} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		c.errorf(p, "name the certificate once: credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates are exclusive")
	}
	if crl := t.GetCaCrl(); crl != "" {
		if t.GetCredentialName() != "" {
			c.errorf(p.Field("caCrl"), "cannot be used with credentialName; put the CRL in the credential's Secret (ca.crl)")
		} else if t.GetMode() == networking.ServerTLSSettings_SIMPLE {
			c.errorf(p.Field("caCrl"), "has no effect with mode SIMPLE, which does not check client certificates; use MUTUAL or remove it")
		}
	}
	hasCert := t.GetCredentialName() != "" || len(t.GetCredentialNames()) > 0 || len(t.GetTlsCertificates()) > 0 ||
		(t.GetServerCertificate() != "" && t.GetPrivateKey() != "")
	switch t.GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		if !hasCert {
			c.errorf(p, "mode %s needs a certificate: credentialName (a Secret), or serverCertificate and privateKey", t.GetMode())
		}
		if t.GetMode() != networking.ServerTLSSettings_SIMPLE && t.GetCredentialName() == "" && len(t.GetCredentialNames()) == 0 &&
			t.GetCaCertificates() == "" && t.GetCaCertCredentialName() == "" {
			c.errorf(p.Field("caCertificates"), "missing; mode %s verifies clients and needs caCertificates or a credentialName with a CA", t.GetMode())
		}
		if t.GetServerCertificate() != "" && t.GetPrivateKey() == "" {
			c.errorf(p.Field("privateKey"), "missing; serverCertificate needs privateKey")
		}
		if t.GetPrivateKey() != "" && t.GetServerCertificate() == "" {
			c.errorf(p.Field("serverCertificate"), "missing; privateKey needs serverCertificate")
		}
		for i, tc := range t.GetTlsCertificates() {
			if tc.GetServerCertificate() == "" || tc.GetPrivateKey() == "" {
				c.errorf(p.Field("tlsCertificates").Index(i), "needs both serverCertificate and privateKey")
			}
		}
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		if hasCert && !t.GetHttpsRedirect() {
			c.warnf(p, "mode %s forwards TLS untouched; the certificate settings are ignored", t.GetMode())
		}
		if proto != "TLS" && t.GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
			// An east-west gateway routes by the SNI of mesh mTLS
			// (outbound_.PORT_.SUBSET_.HOST); only a TLS server sees it.
			c.errorf(p.Field("mode"), "AUTO_PASSTHROUGH needs protocol TLS, not %s (an east-west gateway: port 15443, protocol TLS, hosts \"*.local\")", proto)
		}
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		if hasCert || t.GetServerCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" {
			c.errorf(p, "mode ISTIO_MUTUAL uses the mesh's certificates; remove credentialName(s), tlsCertificates, serverCertificate, privateKey and caCertificates")
		}
	}
	if t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO && t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO &&
		t.GetMinProtocolVersion() > t.GetMaxProtocolVersion() {
		c.errorf(p.Field("minProtocolVersion"), "%s is above maxProtocolVersion %s", t.GetMinProtocolVersion(), t.GetMaxProtocolVersion())
	}
}

// httpProtocols are the port protocols that carry HTTP in plain text.
var httpProtocols = map[string]bool{"HTTP": true, "HTTP2": true, "HTTP_PROXY": true, "GRPC": true, "GRPC-WEB": true}
