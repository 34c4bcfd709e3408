package config

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// Istio API groups.
const (
	GroupNetworking = "networking.istio.io"
	GroupSecurity   = "security.istio.io"
	GroupTelemetry  = "telemetry.istio.io"
)

// KindInfo describes one Istio kind Trellis reads.
type KindInfo struct {
	Kind  string
	Group string
	// Versions are the accepted API versions, newest first.
	Versions []string
	// New returns an empty spec message of the kind.
	New func() proto.Message
}

// APIVersions lists the accepted "group/version" strings, newest first.
func (k KindInfo) APIVersions() []string {
	out := make([]string, len(k.Versions))
	for i, v := range k.Versions {
		out[i] = k.Group + "/" + v
	}
	return out
}

var networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
var securityVersions = []string{"v1", "v1beta1"}
var telemetryVersions = []string{"v1", "v1alpha1"}

var kinds = map[string]KindInfo{
	KindVirtualService:        {KindVirtualService, GroupNetworking, networkingVersions, func() proto.Message { return &networking.VirtualService{} }},
	KindDestinationRule:       {KindDestinationRule, GroupNetworking, networkingVersions, func() proto.Message { return &networking.DestinationRule{} }},
	KindGateway:               {KindGateway, GroupNetworking, networkingVersions, func() proto.Message { return &networking.Gateway{} }},
	KindServiceEntry:          {KindServiceEntry, GroupNetworking, networkingVersions, func() proto.Message { return &networking.ServiceEntry{} }},
	KindWorkloadEntry:         {KindWorkloadEntry, GroupNetworking, networkingVersions, func() proto.Message { return &networking.WorkloadEntry{} }},
	KindWorkloadGroup:         {KindWorkloadGroup, GroupNetworking, networkingVersions, func() proto.Message { return &networking.WorkloadGroup{} }},
	KindSidecar:               {KindSidecar, GroupNetworking, networkingVersions, func() proto.Message { return &networking.Sidecar{} }},
	KindPeerAuthentication:    {KindPeerAuthentication, GroupSecurity, securityVersions, func() proto.Message { return &security.PeerAuthentication{} }},
	KindAuthorizationPolicy:   {KindAuthorizationPolicy, GroupSecurity, securityVersions, func() proto.Message { return &security.AuthorizationPolicy{} }},
	KindRequestAuthentication: {KindRequestAuthentication, GroupSecurity, securityVersions, func() proto.Message { return &security.RequestAuthentication{} }},
	KindTelemetry:             {KindTelemetry, GroupTelemetry, telemetryVersions, func() proto.Message { return &telemetry.Telemetry{} }},
}

// unsupportedKinds are real Istio kinds Trellis does not act on; they are
// skipped with a reason rather than rejected.
var unsupportedKinds = map[string]bool{
	"EnvoyFilter":             true,
	"ProxyConfig":             true,
	"WasmPlugin":              true,
	"IstioOperator":           true,
	"MeshConfig":              true,
	"ReferenceGrant":          true,
	"GatewayClass":            true,
	"HTTPRoute":               true,
	"TCPRoute":                true,
	"GRPCRoute":               true,
	"TLSRoute":                true,
	"IstioCertificateRequest": true,
}

// Kinds returns every kind Trellis reads, sorted by name.
func Kinds() []KindInfo {
	out := make([]KindInfo, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// LookupKind returns the description of an Istio kind.
func LookupKind(kind string) (KindInfo, bool) {
	k, ok := kinds[kind]
	return k, ok
}

func kindNames(group string) string {
	var names []string
	for _, k := range kinds {
		if k.Group == group {
			names = append(names, k.Kind)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// isIstioGroup reports whether an API group belongs to Istio.
func isIstioGroup(group string) bool {
	return group == "istio.io" || strings.HasSuffix(group, ".istio.io")
}
