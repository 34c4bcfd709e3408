package telemetry

import (
	"encoding/base64"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Header names Istio's peer metadata exchange uses over HTTP.
const (
	PeerMetadataHeader   = "x-envoy-peer-metadata"
	PeerMetadataIDHeader = "x-envoy-peer-metadata-id"
)

// PeerFromMetadata derives a Peer from node metadata (a Struct with
// Istio's keys: NAMESPACE, LABELS, WORKLOAD_NAME, CLUSTER_ID,
// SERVICE_ACCOUNT ...) — the proxy's own node, or a caller's decoded
// x-envoy-peer-metadata.
func PeerFromMetadata(md *structpb.Struct) Peer {
	f := md.GetFields()
	s := func(k string) string { return f[k].GetStringValue() }
	labels := f["LABELS"].GetStructValue().GetFields()
	l := func(k string) string { return labels[k].GetStringValue() }
	p := Peer{
		Workload:  s("WORKLOAD_NAME"),
		Namespace: s("NAMESPACE"),
		App:       l("app"),
		Version:   l("version"),
		Cluster:   s("CLUSTER_ID"),
	}
	p.CanonicalService = l("service.istio.io/canonical-name")
	if p.CanonicalService == "" {
		p.CanonicalService = p.App
		if p.CanonicalService == "" {
			p.CanonicalService = p.Workload
		}
	}
	p.CanonicalRevision = l("service.istio.io/canonical-revision")
	if p.CanonicalRevision == "" {
		p.CanonicalRevision = p.Version
		if p.CanonicalRevision == "" {
			p.CanonicalRevision = "latest"
		}
	}
	return p
}

// EncodePeerMetadata renders node metadata as the x-envoy-peer-metadata
// header value (base64 of the serialized Struct). Compute it once at start.
func EncodePeerMetadata(md *structpb.Struct) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(md)
	if err != nil {
		return "", fmt.Errorf("encode peer metadata: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodePeerMetadata parses an x-envoy-peer-metadata header value.
func DecodePeerMetadata(v string) (*structpb.Struct, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("peer metadata: not base64: %w", err)
	}
	md := &structpb.Struct{}
	if err := proto.Unmarshal(b, md); err != nil {
		return nil, fmt.Errorf("peer metadata: not a protobuf Struct: %w", err)
	}
	return md, nil
}
