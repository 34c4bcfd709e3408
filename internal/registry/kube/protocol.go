package kube

import (
	"strings"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// protocols maps Istio's protocol names (port-name prefixes and
// appProtocol values) to registry protocols.
var protocols = map[string]registry.Protocol{
	"http":     registry.HTTP,
	"http2":    registry.HTTP2,
	"h2c":      registry.HTTP2,
	"grpc":     registry.GRPC,
	"grpc-web": registry.HTTP,
	"https":    registry.HTTPS,
	"tls":      registry.TLS,
	"tcp":      registry.TCP,
	"mongo":    registry.Mongo,
	"redis":    registry.Redis,
	"mysql":    registry.TCP,
}

// appProtocols are the Kubernetes-defined appProtocol values.
var appProtocols = map[string]registry.Protocol{
	"kubernetes.io/h2c": registry.HTTP2,
	"kubernetes.io/ws":  registry.HTTP,
	"kubernetes.io/wss": registry.HTTPS,
}

// Protocol selects a port's protocol as Istio does: appProtocol first,
// then the port name ("http", "http-web", "grpc-api", "tcp-db", ...; the
// name must be the protocol or start with it and a dash). Anything else is
// Unknown (detected at run time).
func Protocol(name, appProtocol string) registry.Protocol {
	if appProtocol != "" {
		ap := strings.ToLower(appProtocol)
		if p, ok := appProtocols[ap]; ok {
			return p
		}
		if p, ok := protocols[ap]; ok {
			return p
		}
	}
	n := strings.ToLower(name)
	if p, ok := protocols[n]; ok {
		return p
	}
	// "grpc-web-x" must be grpc-web, not grpc: try the longest prefix.
	best, bestLen := registry.Unknown, 0
	for k, p := range protocols {
		if strings.HasPrefix(n, k+"-") && len(k) > bestLen {
			best, bestLen = p, len(k)
		}
	}
	return best
}
