package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// Load reads a bootstrap file in YAML or JSON (chosen by content: YAML is a
// superset of JSON) and validates it.
func Load(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bootstrap: %w", err)
	}
	bs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", filepath.Base(path), err)
	}
	return bs, nil
}

// Parse decodes and validates bootstrap YAML or JSON.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, bs); err != nil {
		return nil, fmt.Errorf("decode: %w (field names are Envoy's snake_case or camelCase; durations are strings like \"1s\")", err)
	}
	if err := Validate(bs); err != nil {
		return nil, err
	}
	return bs, nil
}

// Validate checks a bootstrap: the schema rules of the Envoy protos (with
// field paths), then what trellis-proxy needs: an admin address that is an
// IP socket address and, with dynamic_resources, an ADS config it can reach
// and a node id to identify itself with. As in Envoy, a static-only
// bootstrap needs no node.
func Validate(bs *bootstrapv3.Bootstrap) error {
	var errs []error
	if err := bs.ValidateAll(); err != nil {
		errs = append(errs, err)
	}
	if bs.GetDynamicResources() != nil && bs.GetNode().GetId() == "" {
		errs = append(errs, errors.New("node.id: must be set when dynamic_resources is, to identify the proxy to the xDS server (e.g. sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local)"))
	}
	if a := bs.GetAdmin().GetAddress(); a != nil {
		if _, err := SocketAddress(a); err != nil {
			errs = append(errs, fmt.Errorf("admin.address: %w", err))
		}
	}
	if bs.GetDynamicResources() != nil {
		if _, err := ADSTarget(bs); err != nil {
			errs = append(errs, err)
		}
		if bs.GetDynamicResources().GetLdsConfig() != nil && bs.GetDynamicResources().GetLdsConfig().GetAds() == nil {
			errs = append(errs, errors.New("dynamic_resources.lds_config: only ads is supported"))
		}
		if bs.GetDynamicResources().GetCdsConfig() != nil && bs.GetDynamicResources().GetCdsConfig().GetAds() == nil {
			errs = append(errs, errors.New("dynamic_resources.cds_config: only ads is supported"))
		}
	}
	seen := map[string]bool{}
	for i, c := range bs.GetStaticResources().GetClusters() {
		if seen[c.GetName()] {
			errs = append(errs, fmt.Errorf("static_resources.clusters[%d].name: duplicate cluster name %q", i, c.GetName()))
		}
		seen[c.GetName()] = true
		// A static EDS cluster takes its endpoints over ADS: like Envoy,
		// refuse it without an ADS stream (which also brings the node id
		// requirement above).
		if c.GetType() == clusterv3.Cluster_EDS && bs.GetDynamicResources().GetAdsConfig() == nil {
			errs = append(errs, fmt.Errorf("static_resources.clusters[%d].eds_cluster_config: an EDS cluster needs dynamic_resources.ads_config to get its endpoints; use type STATIC with a load_assignment, or configure ADS and a node.id", i))
		}
	}
	return errors.Join(errs...)
}

// SocketAddress renders an Address as "ip:port".
func SocketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", errors.New("must be a socket_address")
	}
	if net.ParseIP(sa.GetAddress()) == nil {
		return "", fmt.Errorf("socket_address.address: %q is not an IP address", sa.GetAddress())
	}
	if sa.GetPortValue() > 65535 {
		return "", fmt.Errorf("socket_address.port_value: %d is out of range", sa.GetPortValue())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}

// AdminAddress returns the admin listener address, defaulting to Istio's
// 127.0.0.1:15000.
func AdminAddress(bs *bootstrapv3.Bootstrap) string {
	if a := bs.GetAdmin().GetAddress(); a != nil {
		if s, err := SocketAddress(a); err == nil {
			return s
		}
	}
	return "127.0.0.1:15000"
}

// ADS is where and how the xDS client connects.
type ADS struct {
	// Address is the gRPC target ("127.0.0.1:15010").
	Address string
	// Delta is true for api_type DELTA_GRPC, false for GRPC (State of the World).
	Delta bool
	// MaxMessageSize is envoy_grpc.max_receive_message_length: the largest
	// response accepted; 0 is unlimited, as in Envoy.
	MaxMessageSize int
}

// ADSTarget resolves dynamic_resources.ads_config to a gRPC target: an
// envoy_grpc cluster_name names a static cluster whose first endpoint is
// the server, a google_grpc target_uri is used as is.
func ADSTarget(bs *bootstrapv3.Bootstrap) (ADS, error) {
	const p = "dynamic_resources.ads_config"
	ac := bs.GetDynamicResources().GetAdsConfig()
	if ac == nil {
		return ADS{}, errors.New(p + ": must be set to use dynamic resources")
	}
	var out ADS
	switch ac.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		out.Delta = true
	default:
		return ADS{}, fmt.Errorf("%s.api_type: %v is not supported; use GRPC or DELTA_GRPC", p, ac.GetApiType())
	}
	gs := ac.GetGrpcServices()
	if len(gs) == 0 {
		return ADS{}, errors.New(p + ".grpc_services: must name the ADS server")
	}
	switch {
	case gs[0].GetEnvoyGrpc() != nil:
		name := gs[0].GetEnvoyGrpc().GetClusterName()
		out.MaxMessageSize = int(gs[0].GetEnvoyGrpc().GetMaxReceiveMessageLength().GetValue())
		for _, c := range bs.GetStaticResources().GetClusters() {
			if c.GetName() != name {
				continue
			}
			for _, le := range c.GetLoadAssignment().GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					sa := e.GetEndpoint().GetAddress().GetSocketAddress()
					if sa == nil {
						continue
					}
					out.Address = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
					return out, nil
				}
			}
			return ADS{}, fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: static cluster %q has no endpoint", p, name)
		}
		return ADS{}, fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: no static cluster named %q", p, name)
	case gs[0].GetGoogleGrpc() != nil:
		out.Address = strings.TrimPrefix(gs[0].GetGoogleGrpc().GetTargetUri(), "dns:///")
		if out.Address == "" {
			return ADS{}, errors.New(p + ".grpc_services[0].google_grpc.target_uri: must be set")
		}
		return out, nil
	}
	return ADS{}, errors.New(p + ".grpc_services[0]: must use envoy_grpc or google_grpc")
}
