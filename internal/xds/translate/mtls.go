package translate

import (
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// Mesh mTLS, as Istio: the workload certificate and trust bundle are the
// SDS secrets every proxy serves itself, endpoints with a sidecar carry
// tlsMode: istio, and the peers recognise each other's mTLS by ALPN.
const (
	// TLSModeLabel marks a workload that has a sidecar (the injector and
	// local mode set it to "istio").
	TLSModeLabel = "security.istio.io/tlsMode"
	// TransportSocketMatchKey is the endpoint metadata that
	// transport_socket_matches compare.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	// WorkloadCertSecret and RootCertSecret are the SDS names of the
	// proxy's own certificate and the mesh trust bundle.
	WorkloadCertSecret = "default"
	RootCertSecret     = "ROOTCA"
)

// mtlsALPN is what a sidecar offers on mesh mTLS connections.
var mtlsALPN = []string{"istio-peer-exchange", "istio"}

// inboundMTLSALPN are the ALPN values that select an inbound mTLS filter
// chain (Istio's, including the protocol-suffixed forms).
var inboundMTLSALPN = []string{"istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"}

func (s *scope) trustDomain() string {
	if s.mesh.TrustDomain == "" {
		return DefaultTrustDomain
	}
	return s.mesh.TrustDomain
}

// DefaultTrustDomain is the SPIFFE trust domain when MeshConfig sets none.
const DefaultTrustDomain = "cluster.local"

func spiffeID(td, ns, sa string) string { return "spiffe://" + td + "/ns/" + ns + "/sa/" + sa }

// serviceIdentities are the SPIFFE IDs of the service accounts the
// service's endpoints run as, sorted: the identities a client accepts
// from the server (Istio verifies the service's accounts).
func (s *scope) serviceIdentities(svc *registry.Service) []string {
	seen := map[string]bool{}
	var out []string
	if s.in.Registry == nil {
		return nil
	}
	for _, ep := range s.in.Registry.Endpoints[svc.Hostname] {
		if ep.ServiceAccount == "" {
			continue
		}
		ns := ep.Namespace
		if ns == "" {
			ns = svc.Namespace
		}
		id := spiffeID(s.trustDomain(), ns, ep.ServiceAccount)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func sdsRef(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

// meshUpstreamTLS is the client side of mesh mTLS to svc:port[subset]:
// the workload certificate, the trust bundle with the server's SPIFFE
// IDs, ALPN istio and SNI outbound_.PORT_.SUBSET_.HOST. sni and sans
// (DestinationRule ISTIO_MUTUAL's) replace the defaults when set.
func (s *scope) meshUpstreamTLS(svc *registry.Service, port uint32, subset, sni string, sans []string) *corev3.TransportSocket {
	if sni == "" {
		sni = "outbound_." + u32(port) + "_." + subset + "_." + svc.Hostname
	}
	if len(sans) == 0 {
		sans = s.serviceIdentities(svc)
	}
	vc := &tlsv3.CertificateValidationContext{}
	for _, id := range sans {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
		})
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  mtlsALPN,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef(WorkloadCertSecret)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         vc,
			ValidationContextSdsSecretConfig: sdsRef(RootCertSecret),
		}},
	}}
	return &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// applyClusterTLS sets the cluster's transport: DestinationRule tls
// ISTIO_MUTUAL is mesh mTLS to every endpoint; SIMPLE and MUTUAL are
// applyUpstreamTLS's; DISABLE is plaintext; no tls setting is auto mTLS
// (unless the mesh turns it off): transport_socket_matches give endpoints
// labelled tlsMode: istio mesh mTLS and the others plaintext. Services
// outside the mesh and passthrough clusters get no auto mTLS, nor do
// proxyless gRPC clients (they have no SDS certificates).
func (s *scope) applyClusterTLS(c *clusterv3.Cluster, svc *registry.Service, port uint32, subset string, t *networking.ClientTLSSettings) {
	switch {
	case t.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL:
		c.TransportSocket = s.meshUpstreamTLS(svc, port, subset, t.GetSni(), t.GetSubjectAltNames())
	case t != nil:
		applyUpstreamTLS(c, svc, t)
	case s.mesh.DisableAutoMTLS || s.proxy.Generator == GeneratorGRPC || svc.MeshExternal || svc.Resolution == registry.ResolutionNone:
	default:
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-istio",
				Match:           &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
				TransportSocket: s.meshUpstreamTLS(svc, port, subset, "", nil),
			},
			{
				Name:            "tlsMode-disabled",
				Match:           &structpb.Struct{},
				TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"},
			},
		}
	}
}

// endpointTLSMode adds the tlsMode: istio match metadata for an endpoint
// whose workload has a sidecar.
func endpointTLSMode(md *corev3.Metadata, ep *registry.Endpoint) {
	if ep.Labels[TLSModeLabel] != "istio" {
		return
	}
	md.FilterMetadata[TransportSocketMatchKey] = &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}
}

// peerMode is a resolved PeerAuthentication mode.
type peerMode int

const (
	peerPermissive peerMode = iota
	peerStrict
	peerDisable
)

// peerPolicy is the PeerAuthentication in force for the proxy's
// workload: a mode and per-port overrides.
type peerPolicy struct {
	mode  peerMode
	ports map[uint32]peerMode
}

func (p peerPolicy) forPort(port uint32) peerMode {
	if m, ok := p.ports[port]; ok {
		return m
	}
	return p.mode
}

// resolveMode applies one PeerAuthentication mode over the inherited one:
// UNSET (or no mtls) inherits.
func resolveMode(m *security.PeerAuthentication_MutualTLS, inherited peerMode) peerMode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return peerStrict
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return peerPermissive
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return peerDisable
	}
	return inherited
}

// peerAuthentication resolves Istio's precedence for the proxy's
// workload: the mesh-wide policy (root namespace, no selector), then the
// namespace-wide one (proxy's namespace, no selector), then a workload
// policy (proxy's namespace, selector matching its labels), each UNSET
// inheriting from the one before; portLevelMtls of the workload policy
// override per port (UNSET inherits the workload's mode). Without any
// policy the mode is PERMISSIVE. When several policies compete at one
// level the first by name wins (Istio takes the oldest).
func (s *scope) peerAuthentication() peerPolicy {
	var mesh, ns, workload *security.PeerAuthentication
	var list []*config.Resource
	if s.in.Config != nil {
		list = s.in.Config.List(config.KindPeerAuthentication)
	}
	sorted := append([]*config.Resource(nil), list...)
	sort.Slice(sorted, func(i, j int) bool {
		if nsOf(sorted[i]) != nsOf(sorted[j]) {
			return nsOf(sorted[i]) < nsOf(sorted[j])
		}
		return sorted[i].Name < sorted[j].Name
	})
	for _, r := range sorted {
		pa, ok := r.Spec.(*security.PeerAuthentication)
		if !ok || pa == nil {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case nsOf(r) == s.proxy.Namespace && len(sel) > 0:
			if workload == nil && registry.Matches(sel, s.proxy.Labels) {
				workload = pa
			}
		case nsOf(r) == s.proxy.Namespace && nsOf(r) != s.mesh.RootNamespace:
			if ns == nil {
				ns = pa
			}
		case nsOf(r) == s.mesh.RootNamespace && len(sel) == 0:
			if mesh == nil {
				mesh = pa
			}
		}
	}
	p := peerPolicy{mode: peerPermissive}
	for _, pa := range []*security.PeerAuthentication{mesh, ns, workload} {
		if pa != nil {
			p.mode = resolveMode(pa.GetMtls(), p.mode)
		}
	}
	if workload != nil {
		for port, m := range workload.GetPortLevelMtls() {
			if p.ports == nil {
				p.ports = map[uint32]peerMode{}
			}
			p.ports[port] = resolveMode(m, p.mode)
		}
	}
	return p
}

// inboundChains are the filter chains of one inbound port under mode:
// STRICT only the mTLS chain (TLS with ALPN istio, client certificate
// required and verified against the trust bundle), DISABLE only the
// plaintext chain, PERMISSIVE both.
func inboundChains(name string, port uint32, http bool, mode peerMode, fs ...*listenerv3.Filter) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	if mode != peerDisable {
		ctc := &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsRef(WorkloadCertSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsRef(RootCertSecret)},
		}
		if http {
			ctc.AlpnProtocols = []string{"h2", "http/1.1"}
		}
		dtc := &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapBool(true), CommonTlsContext: ctc}
		fc := filterChain(name, &listenerv3.FilterChainMatch{DestinationPort: u32v(port), TransportProtocol: "tls", ApplicationProtocols: inboundMTLSALPN}, fs...)
		fc.TransportSocket = &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(dtc)}}
		out = append(out, fc)
	}
	if mode != peerStrict {
		out = append(out, filterChain(name, &listenerv3.FilterChainMatch{DestinationPort: u32v(port)}, fs...))
	}
	return out
}
