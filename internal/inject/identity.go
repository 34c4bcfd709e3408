package inject

import (
	"net"

	corev1 "k8s.io/api/core/v1"
)

// What a sidecar needs for its workload certificate, as Istio's injector
// mounts it: a projected ServiceAccount token for the CA's audience, which
// the kubelet rotates, and the istio-ca-root-cert ConfigMap trellisd
// publishes in every namespace (the trust bundle that verifies the CA).
// trellis-proxy reads both from these paths by default.
const (
	TokenVolume      = "istio-token"
	TokenDir         = "/var/run/secrets/tokens"
	TokenFile        = "istio-token" // TokenDir/TokenFile
	TokenAudience    = "istio-ca"
	TokenExpiry      = 43200 // seconds, as Istio's template
	RootCertVolume   = "istiod-ca-cert"
	RootCertDir      = "/var/run/secrets/istio"
	RootCertFile     = "root-cert.pem" // RootCertDir/RootCertFile
	RootConfigMap    = "istio-ca-root-cert"
	DefaultCAPort    = "15012"
	EnvCAAddress     = "CA_ADDR"
	EnvXDSAddress    = "XDS_ADDRESS"
	EnvCertProvider  = "PILOT_CERT_PROVIDER"
	certProviderName = "istiod"
)

// caAddress is the CA address the proxies are given: cfg.CAAddress, or
// the discovery address's host on port 15012.
func (cfg Config) caAddress() string {
	if cfg.CAAddress != "" {
		return cfg.CAAddress
	}
	host, _, err := net.SplitHostPort(cfg.DiscoveryAddress)
	if err != nil || host == "" {
		return ""
	}
	return net.JoinHostPort(host, DefaultCAPort)
}

// IdentityVolumes are the pod volumes holding the CA token and trust
// bundle.
func IdentityVolumes() []corev1.Volume {
	exp := int64(TokenExpiry)
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: &exp, Path: TokenFile,
			}}},
		}}},
		{Name: RootCertVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: RootConfigMap},
		}}},
	}
}

// IdentityMounts mount IdentityVolumes into the proxy container.
func IdentityMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
		{Name: RootCertVolume, MountPath: RootCertDir, ReadOnly: true},
	}
}

// IdentityEnv is the proxy's environment naming trellisd: the xDS and CA
// addresses (Istio's XDS_ADDRESS and CA_ADDR) and the CA kind.
func (cfg Config) IdentityEnv() []corev1.EnvVar {
	env := []corev1.EnvVar{{Name: EnvXDSAddress, Value: cfg.DiscoveryAddress}}
	if ca := cfg.caAddress(); ca != "" {
		env = append(env, corev1.EnvVar{Name: EnvCAAddress, Value: ca}, corev1.EnvVar{Name: EnvCertProvider, Value: certProviderName})
	}
	return env
}
