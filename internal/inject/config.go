package inject

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Config holds the injection settings (the install's values.global.proxy
// and sidecarInjectorWebhook). The zero value is not usable; start from
// DefaultConfig.
type Config struct {
	// ProxyImage is the image of both injected containers
	// ("ghcr.io/trellis-mesh/proxy:0.1.0-dev").
	ProxyImage      string `json:"proxyImage"`
	ImagePullPolicy string `json:"imagePullPolicy,omitempty"`
	// DiscoveryAddress is trellisd's xDS address as seen from pods.
	DiscoveryAddress string `json:"discoveryAddress"`
	// CAAddress is trellisd's certificate API (Istio's CA_ADDR) as seen
	// from pods; empty means the DiscoveryAddress host on port 15012.
	CAAddress string `json:"caAddress,omitempty"`
	// Capture defaults; the traffic.sidecar.istio.io/* pod annotations
	// override them. "*" means all, "" none.
	IncludeIPRanges      string `json:"includeIPRanges"`
	ExcludeIPRanges      string `json:"excludeIPRanges,omitempty"`
	IncludeInboundPorts  string `json:"includeInboundPorts"`
	ExcludeInboundPorts  string `json:"excludeInboundPorts,omitempty"`
	ExcludeOutboundPorts string `json:"excludeOutboundPorts,omitempty"`
	// Concurrency is the proxy's worker count; zero means one per CPU.
	Concurrency int64  `json:"concurrency,omitempty"`
	LogLevel    string `json:"logLevel,omitempty"`
	// Privileged runs both containers privileged (values.global.proxy.privileged).
	Privileged bool `json:"privileged,omitempty"`
	// Policy is "enabled" (inject where the namespace asks) or "disabled"
	// (only pods labelled or annotated sidecar.istio.io/inject=true).
	Policy string `json:"policy"`
	// EnableNamespacesByDefault injects in every namespace not labelled
	// istio-injection=disabled.
	EnableNamespacesByDefault bool `json:"enableNamespacesByDefault,omitempty"`
	// RewriteAppHTTPProbe sends the app's HTTP probes through the proxy's
	// health port, so they work when inbound traffic is captured.
	RewriteAppHTTPProbe bool `json:"rewriteAppHTTPProbe"`
	// Resources of the proxy container (Kubernetes quantities by resource
	// name); sidecar.istio.io/proxyCPU etc. override them.
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
	// NativeSidecars chooses the proxy's form: "auto" (the default) runs
	// it as a native sidecar (an init container with restartPolicy: Always)
	// where the cluster is Kubernetes 1.29 or later, "true" always, "false"
	// never (values.pilot.env.ENABLE_NATIVE_SIDECARS). The pod annotation
	// sidecar.istio.io/nativeSidecar overrides it.
	NativeSidecars string `json:"nativeSidecars,omitempty"`
	// HoldApplicationUntilProxyStarts, for the non-native form, puts the
	// proxy first with a postStart hook that waits for its readiness, so
	// the app starts only once the proxy is ready
	// (meshConfig.defaultConfig.holdApplicationUntilProxyStarts; default
	// true). Native sidecars always start first.
	HoldApplicationUntilProxyStarts bool `json:"holdApplicationUntilProxyStarts"`
	// TerminationDrainDuration is how long the proxy drains on SIGTERM
	// (meshConfig.defaultConfig.terminationDrainDuration, "5s" when empty).
	TerminationDrainDuration string `json:"terminationDrainDuration,omitempty"`
	// ClusterID, MeshID and Network go into the proxy's node metadata.
	ClusterID string `json:"clusterID,omitempty"`
	MeshID    string `json:"meshID,omitempty"`
	Network   string `json:"network,omitempty"`
}

// DefaultConfig is the default profile's injection config.
func DefaultConfig() Config {
	return Config{
		ProxyImage:          "ghcr.io/trellis-mesh/proxy:0.1.0-dev",
		ImagePullPolicy:     "IfNotPresent",
		DiscoveryAddress:    "trellisd.trellis-system.svc:15010",
		IncludeIPRanges:     "*",
		IncludeInboundPorts: "*",
		Concurrency:         2,
		LogLevel:            "warning",
		Policy:              "enabled",
		RewriteAppHTTPProbe: true,
		Requests:            map[string]string{"cpu": "100m", "memory": "64Mi"},
		Limits:              map[string]string{"cpu": "2", "memory": "512Mi"},
		ClusterID:           "Kubernetes",
		MeshID:              "cluster.local",

		NativeSidecars:                  "auto",
		HoldApplicationUntilProxyStarts: true,
		TerminationDrainDuration:        "5s",
	}
}

// LoadConfig reads a Config from JSON or YAML (the "config" key of the
// trellis-sidecar-injector ConfigMap, mounted by trellisd at
// /etc/trellis/inject/config). Fields left out keep DefaultConfig's values;
// unknown fields are errors.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("injection config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, fmt.Errorf("injection config %s: %w", path, err)
	}
	if c.ProxyImage == "" {
		return c, fmt.Errorf("injection config %s: proxyImage: required", path)
	}
	if c.Policy != "enabled" && c.Policy != "disabled" {
		return c, fmt.Errorf("injection config %s: policy: got %q, want enabled or disabled", path, c.Policy)
	}
	if _, err := podLifecycle(c, Target{}, nil); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
