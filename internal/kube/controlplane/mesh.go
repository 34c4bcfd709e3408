package controlplane

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// MeshConfig is the part of the "trellis" ConfigMap's mesh key (written by
// `trellis install`, mounted at /etc/trellis/config/mesh) trellisd acts on.
type MeshConfig struct {
	AccessLogFile         string `json:"accessLogFile"`
	AccessLogEncoding     string `json:"accessLogEncoding"`
	EnableTracing         bool   `json:"enableTracing"`
	RootNamespace         string `json:"rootNamespace"`
	EnableAutoMtls        bool   `json:"enableAutoMtls"`
	TrustDomain           string `json:"trustDomain"`
	OutboundTrafficPolicy struct {
		Mode string `json:"mode"`
	} `json:"outboundTrafficPolicy"`
	DefaultConfig struct {
		Concurrency      int64           `json:"concurrency"`
		DiscoveryAddress string          `json:"discoveryAddress"`
		Tracing          json.RawMessage `json:"tracing,omitempty"`
	} `json:"defaultConfig"`
	// ExtensionProviders and DefaultProviders are read into the tracing
	// options as Istio's MeshConfig messages.
	ExtensionProviders []json.RawMessage `json:"extensionProviders,omitempty"`
	DefaultProviders   json.RawMessage   `json:"defaultProviders,omitempty"`
}

// ApplyMeshConfig reads the mesh config file (--mesh-config) and sets the
// trellisd options it governs (access log file and encoding, outbound
// traffic policy, trust domain). Unknown keys are errors naming the file.
func ApplyMeshConfig(path string, o *trellisd.Options) (*MeshConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	m := &MeshConfig{}
	if err := yaml.UnmarshalStrict(b, m); err != nil {
		return nil, fmt.Errorf("mesh config %s: %w", path, err)
	}
	if m.TrustDomain != "" {
		o.TrustDomain = m.TrustDomain
	}
	o.AccessLogFile = m.AccessLogFile
	o.AccessLogEncoding = m.AccessLogEncoding
	if m.OutboundTrafficPolicy.Mode != "" {
		o.OutboundTrafficPolicy = m.OutboundTrafficPolicy.Mode
	}
	if len(m.ExtensionProviders) > 0 || len(m.DefaultProviders) > 0 || len(m.DefaultConfig.Tracing) > 0 {
		js, err := yaml.YAMLToJSON(b)
		if err != nil {
			return nil, fmt.Errorf("mesh config %s: %w", path, err)
		}
		mc := &meshv1alpha1.MeshConfig{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, mc); err != nil {
			return nil, fmt.Errorf("mesh config %s: extensionProviders/defaultProviders/defaultConfig.tracing: %w", path, err)
		}
		o.MeshConfig = mc
	}
	return m, nil
}
