package translate

import (
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// ProxyType is Istio's node type: the first field of the node id.
type ProxyType string

const (
	SidecarProxy ProxyType = "sidecar"
	RouterProxy  ProxyType = "router" // ingress/egress gateway
)

// Proxy is the identity of the proxy asking for config, taken from its xDS
// node (see docs/xds-contract.md for the node id and metadata keys).
type Proxy struct {
	ID             string    // full node id, "sidecar~10.0.0.5~front-tomcat-v1.istio-demo~istio-demo.svc.cluster.local"
	Type           ProxyType // sidecar or router
	IPs            []string  // instance IPs
	Name           string    // pod or workload name
	Namespace      string
	Labels         map[string]string
	ServiceAccount string
	Cluster        string
	Network        string
	Locality       string // "region/zone/subzone"
	// Generator is "grpc" for proxyless gRPC clients; empty for proxies.
	Generator string
}

// MeshOptions are mesh-wide settings (Istio's MeshConfig subset).
type MeshOptions struct {
	// DomainSuffix is the cluster domain; zero value means "cluster.local".
	DomainSuffix string
	// RootNamespace holds mesh-wide config; zero value means "istio-system".
	RootNamespace string
	// OutboundAllowAny is MeshConfig outboundTrafficPolicy ALLOW_ANY (true,
	// Istio's default) or REGISTRY_ONLY (false).
	OutboundAllowAny bool
	// AccessLogFile, when set, turns on access logging to that path
	// ("/dev/stdout" for stdout).
	AccessLogFile string
	// AccessLogEncoding is "TEXT" (zero value) or "JSON".
	AccessLogEncoding string
	// TrustDomain is MeshConfig trustDomain, the SPIFFE trust domain of
	// workload identities; zero value means "cluster.local".
	TrustDomain string
	// DisableAutoMTLS is MeshConfig enableAutoMtls: false. By default
	// clients use mesh mTLS to endpoints with a sidecar (tlsMode: istio).
	DisableAutoMTLS bool
	// ExtensionProviders are MeshConfig extensionProviders; the
	// opentelemetry and zipkin ones are tracers a Telemetry or
	// DefaultTracingProviders can name (others are not read here).
	ExtensionProviders []*meshv1alpha1.MeshConfig_ExtensionProvider
	// DefaultTracingProviders is MeshConfig defaultProviders.tracing: the
	// tracer of workloads whose Telemetry names none. Empty: no tracing
	// unless a Telemetry names a provider.
	DefaultTracingProviders []string
	// TraceSampling is defaultConfig.tracing.sampling (PILOT_TRACE_SAMPLING),
	// a percentage; nil means Istio's default, 1%. A Telemetry's
	// randomSamplingPercentage overrides it.
	TraceSampling *float64
	// DefaultAccessLogProviders is MeshConfig defaultProviders.accessLogging:
	// the providers of a Telemetry accessLogging entry that names none
	// (empty: Istio's built-in "envoy", a file log to /dev/stdout).
	DefaultAccessLogProviders []string
}

// DefaultMesh returns Istio's default mesh options.
func DefaultMesh() MeshOptions {
	return MeshOptions{DomainSuffix: "cluster.local", RootNamespace: "istio-system", OutboundAllowAny: true}
}

// Input is everything translation reads.
type Input struct {
	Proxy    *Proxy
	Config   *config.Snapshot
	Registry *registry.Snapshot
	Mesh     MeshOptions
	// Credentials are the gateway TLS secrets, keyed "namespace/name". A
	// Gateway's credentialName is looked up in the gateway proxy's namespace,
	// then in the Gateway resource's namespace. Nil means none are known:
	// listeners still reference "kubernetes://NAME" over SDS.
	Credentials map[string]*Credential
	// JWKS are the JWKS documents trellisd fetched, keyed by the
	// RequestAuthentication jwtRules' jwksUri (see JWKSURIs). A jwtRule
	// whose jwksUri has no entry gets UnusableJWKS: its tokens are
	// refused, never accepted unchecked.
	JWKS map[string]string
}

// Credential is the TLS material of a Kubernetes TLS Secret that a Gateway
// server names in tls.credentialName (PEM bytes). CACert is the ca.crt key,
// used for MUTUAL; it may be empty.
type Credential struct {
	CertChain  []byte
	PrivateKey []byte
	CACert     []byte
}
