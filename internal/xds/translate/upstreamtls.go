package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// TLSTransportSocket is the name of Envoy's TLS transport socket.
const TLSTransportSocket = "envoy.transport_sockets.tls"

// applyUpstreamTLS originates TLS to the cluster's endpoints for a
// DestinationRule tls of mode SIMPLE or MUTUAL: SNI from tls.sni (else the
// host of a DNS/external service), CA and client certificate from files or
// from the SDS secrets of credentialName, SAN checks from
// subjectAltNames. ISTIO_MUTUAL and auto mTLS are applyClusterTLS's
// (mtls.go); DISABLE means plaintext.
func applyUpstreamTLS(c *clusterv3.Cluster, svc *registry.Service, t *networking.ClientTLSSettings) {
	if t == nil || (t.GetMode() != networking.ClientTLSSettings_SIMPLE && t.GetMode() != networking.ClientTLSSettings_MUTUAL) {
		return
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: t.GetSni(), CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if ctx.Sni == "" && (svc.MeshExternal || svc.Resolution == registry.ResolutionDNS) {
		ctx.Sni = svc.Hostname
	}
	cred := t.GetCredentialName()
	skipVerify := t.GetInsecureSkipVerify().GetValue()
	if !skipVerify {
		switch {
		case cred != "":
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SDSPrefix + cred + "-cacert", SdsConfig: adsSource()},
			}
		case t.GetCaCertificates() != "" || len(t.GetSubjectAltNames()) > 0:
			vc := &tlsv3.CertificateValidationContext{}
			if t.GetCaCertificates() != "" {
				vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.GetCaCertificates()}}
			}
			for _, san := range t.GetSubjectAltNames() {
				vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
					SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
				})
			}
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		}
	}
	if t.GetMode() == networking.ClientTLSSettings_MUTUAL {
		switch {
		case cred != "":
			ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: SDSPrefix + cred, SdsConfig: adsSource()}}
		case t.GetClientCertificate() != "":
			ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.GetClientCertificate()}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.GetPrivateKey()}},
			}}
		}
	}
	c.TransportSocket = &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}
