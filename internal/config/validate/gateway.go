package validate

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func (c *checker) gateway(gw *networking.Gateway) {
	spec := Path("spec")
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
			c.checkPort(pp.Field("number"), s.GetPort().GetNumber())
			c.checkProtocol(pp.Field("protocol"), s.GetPort().GetProtocol(), true)
			c.checkOptionalPort(pp.Field("targetPort"), s.GetPort().GetTargetPort())
			proto = strings.ToUpper(s.GetPort().GetProtocol())
			if n := s.GetPort().GetName(); n != "" {
				if j, dup := portNames[n]; dup {
					c.errorf(pp.Field("name"), "port name %q is already used by servers[%d]; port names must be unique", n, j)
				}
				portNames[n] = i
			}
		}
		if len(s.GetHosts()) == 0 {
			c.errorf(p.Field("hosts"), "missing; a server needs at least one host, such as \"*\" or \"example.com\"")
		}
		for j, h := range s.GetHosts() {
			c.checkNamespacedHost(p.Field("hosts").Index(j), h, false, false)
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
		// Plain-text servers may only ask for an HTTPS redirect.
		if proto != "" && (t.GetMode() != networking.ServerTLSSettings_PASSTHROUGH || t.GetCredentialName() != "" || t.GetServerCertificate() != "") {
			c.errorf(p, "a server with protocol %s cannot terminate TLS; use protocol HTTPS or TLS, or keep only httpsRedirect", proto)
		}
		return
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
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		if hasCert && !t.GetHttpsRedirect() {
			c.warnf(p, "mode %s forwards TLS untouched; the certificate settings are ignored", t.GetMode())
		}
		if proto == "HTTPS" && t.GetMode() == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
			c.errorf(p.Field("mode"), "AUTO_PASSTHROUGH needs protocol TLS, not HTTPS")
		}
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		if hasCert {
			c.errorf(p, "mode ISTIO_MUTUAL uses the mesh's certificates; remove credentialName, serverCertificate and privateKey")
		}
	}
	if t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO && t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO &&
		t.GetMinProtocolVersion() > t.GetMaxProtocolVersion() {
		c.errorf(p.Field("minProtocolVersion"), "%s is above maxProtocolVersion %s", t.GetMinProtocolVersion(), t.GetMaxProtocolVersion())
	}
}
