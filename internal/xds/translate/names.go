package translate

import "strings"

// Resource names, as Istio spells them (docs/xds-contract.md).
const (
	PassthroughCluster        = "PassthroughCluster"
	BlackHoleCluster          = "BlackHoleCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"
	VirtualOutboundListener   = "virtualOutbound"
	VirtualInboundListener    = "virtualInbound"

	outboundCapturePort = 15001
	inboundCapturePort  = 15006
)

// OutboundClusterName is "outbound|PORT|SUBSET|HOST".
func OutboundClusterName(port uint32, subset, host string) string {
	return "outbound|" + u32(port) + "|" + subset + "|" + host
}

// InboundClusterName is "inbound|PORT||".
func InboundClusterName(port uint32) string { return "inbound|" + u32(port) + "||" }

// ParseClusterName splits an "outbound|PORT|SUBSET|HOST" or "inbound|PORT||"
// name; ok is false for other names.
func ParseClusterName(name string) (direction, port, subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || (parts[0] != "outbound" && parts[0] != "inbound") {
		return "", "", "", "", false
	}
	return parts[0], parts[1], parts[2], parts[3], true
}
