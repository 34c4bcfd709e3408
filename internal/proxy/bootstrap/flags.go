package bootstrap

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// XDSClusterName is the static cluster FromFlags creates for the ADS server.
const XDSClusterName = "xds-grpc"

// Options describe a proxy the way pilot-agent's flags and environment do.
// Zero values take the documented defaults.
type Options struct {
	// Type is "sidecar" (default) or "router" (gateways).
	Type string
	// IP is the workload's IP (INSTANCE_IP); default 127.0.0.1.
	IP string
	// PodName and Namespace name the workload (POD_NAME, POD_NAMESPACE);
	// Namespace defaults to "default".
	PodName, Namespace string
	// DNSDomain defaults to "svc.cluster.local".
	DNSDomain string
	// NodeID overrides TYPE~IP~POD.NAMESPACE~NAMESPACE.DNSDOMAIN.
	NodeID string
	// Cluster is node.cluster (the service cluster, e.g. "app.namespace").
	Cluster string
	// Labels are the workload's labels (node metadata LABELS).
	Labels map[string]string
	// Identity and placement, written to node metadata under Istio's keys.
	ServiceAccount, WorkloadName, ClusterID, Network, MeshID string
	// InterceptionMode is REDIRECT (default) or NONE.
	InterceptionMode string
	// Version is ISTIO_VERSION in node metadata.
	Version string
	// Region, Zone and SubZone set node.locality.
	Region, Zone, SubZone string
	// XDSAddress is the ADS server (default 127.0.0.1:15010).
	XDSAddress string
	// SotW selects State-of-the-World ADS (api_type GRPC); default Delta.
	SotW bool
	// AdminAddress is the admin listener (default 127.0.0.1:15000).
	AdminAddress string
	// Metadata adds further node metadata string keys.
	Metadata map[string]string
}

// NodeID returns Istio's node id for the options.
func (o Options) nodeID() string {
	if o.NodeID != "" {
		return o.NodeID
	}
	t := o.Type
	if t == "" {
		t = "sidecar"
	}
	ip := o.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	dom := o.DNSDomain
	if dom == "" {
		dom = "svc.cluster.local"
	}
	pod := o.PodName
	if pod == "" {
		pod = o.WorkloadName
	}
	return t + "~" + ip + "~" + pod + "." + ns + "~" + ns + "." + dom
}

// FromFlags builds a bootstrap equivalent to a file a user could write:
// node identity and metadata, the admin address, a static "xds-grpc"
// cluster (HTTP/2) for the ADS server, and dynamic_resources over ADS.
func FromFlags(o Options) (*bootstrapv3.Bootstrap, error) {
	if o.Type != "" && o.Type != "sidecar" && o.Type != "router" {
		return nil, fmt.Errorf("type: %q must be sidecar or router", o.Type)
	}
	xds := o.XDSAddress
	if xds == "" {
		xds = "127.0.0.1:15010"
	}
	xhost, xport, err := splitHostPort(xds, false)
	if err != nil {
		return nil, fmt.Errorf("xds address: %w", err)
	}
	admin := o.AdminAddress
	if admin == "" {
		admin = "127.0.0.1:15000"
	}
	ahost, aport, err := splitHostPort(admin, true) // port 0: any free port
	if err != nil {
		return nil, fmt.Errorf("admin address: %w", err)
	}
	if net.ParseIP(ahost) == nil {
		return nil, fmt.Errorf("admin address: %q is not an IP address", ahost)
	}
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	md := map[string]any{
		"NAMESPACE":     ns,
		"ISTIO_VERSION": o.Version,
	}
	setIf := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	setIf("INSTANCE_IPS", o.IP)
	setIf("SERVICE_ACCOUNT", o.ServiceAccount)
	setIf("WORKLOAD_NAME", o.WorkloadName)
	setIf("CLUSTER_ID", o.ClusterID)
	setIf("NETWORK", o.Network)
	setIf("MESH_ID", o.MeshID)
	mode := o.InterceptionMode
	if mode == "" {
		mode = "REDIRECT"
	}
	md["INTERCEPTION_MODE"] = mode
	if len(o.Labels) > 0 {
		l := map[string]any{}
		for k, v := range o.Labels {
			l[k] = v
		}
		md["LABELS"] = l
	}
	keys := make([]string, 0, len(o.Metadata))
	for k := range o.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		md[k] = o.Metadata[k]
	}
	mds, err := structpb.NewStruct(md)
	if err != nil {
		return nil, fmt.Errorf("node metadata: %w", err)
	}
	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	if err != nil {
		return nil, err
	}
	xdsType := clusterv3.Cluster_STATIC
	if net.ParseIP(xhost) == nil {
		xdsType = clusterv3.Cluster_STRICT_DNS
	}
	apiType := corev3.ApiConfigSource_DELTA_GRPC
	if o.SotW {
		apiType = corev3.ApiConfigSource_GRPC
	}
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	bs := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{
			Id:       o.nodeID(),
			Cluster:  o.Cluster,
			Metadata: mds,
		},
		Admin: &bootstrapv3.Admin{Address: socket(ahost, aport)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{{
				Name:                 XDSClusterName,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: xdsType},
				ConnectTimeout:       durationpb.New(time.Second),
				TypedExtensionProtocolOptions: map[string]*anypb.Any{
					"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
				},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{
					ClusterName: XDSClusterName,
					Endpoints: []*endpointv3.LocalityLbEndpoints{{
						LbEndpoints: []*endpointv3.LbEndpoint{{
							HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
								Address: socket(xhost, xport)}},
						}},
					}},
				},
			}},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}},
				}},
			},
			CdsConfig: ads,
			LdsConfig: ads,
		},
	}
	if o.Region != "" || o.Zone != "" || o.SubZone != "" {
		bs.Node.Locality = &corev3.Locality{Region: o.Region, Zone: o.Zone, SubZone: o.SubZone}
	}
	if err := Validate(bs); err != nil {
		return nil, err
	}
	return bs, nil
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func splitHostPort(s string, zeroOK bool) (string, uint32, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 && !zeroOK {
		return "", 0, fmt.Errorf("port %q must be within [1, 65535]", p)
	}
	return h, uint32(n), nil
}

// OptionsFromEnv reads pilot-agent's environment variables: POD_NAME,
// POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT, ISTIO_META_WORKLOAD_NAME,
// ISTIO_META_CLUSTER_ID, ISTIO_META_NETWORK, ISTIO_META_MESH_ID,
// ISTIO_META_INTERCEPTION_MODE, ISTIO_META_* (other metadata),
// ISTIO_METAJSON_LABELS (the pod's labels as a JSON object; invalid JSON is
// ignored) and PILOT_ADDRESS / XDS_ADDRESS.
func OptionsFromEnv(getenv func(string) string, environ []string) Options {
	o := Options{
		PodName:          getenv("POD_NAME"),
		Namespace:        getenv("POD_NAMESPACE"),
		IP:               getenv("INSTANCE_IP"),
		ServiceAccount:   getenv("SERVICE_ACCOUNT"),
		WorkloadName:     getenv("ISTIO_META_WORKLOAD_NAME"),
		ClusterID:        getenv("ISTIO_META_CLUSTER_ID"),
		Network:          getenv("ISTIO_META_NETWORK"),
		MeshID:           getenv("ISTIO_META_MESH_ID"),
		InterceptionMode: getenv("ISTIO_META_INTERCEPTION_MODE"),
		XDSAddress:       getenv("XDS_ADDRESS"),
	}
	if o.XDSAddress == "" {
		o.XDSAddress = getenv("PILOT_ADDRESS")
	}
	if js := getenv("ISTIO_METAJSON_LABELS"); js != "" {
		var labels map[string]string
		if json.Unmarshal([]byte(js), &labels) == nil && len(labels) > 0 {
			o.Labels = labels
		}
	}
	known := map[string]bool{"WORKLOAD_NAME": true, "CLUSTER_ID": true, "NETWORK": true, "MESH_ID": true, "INTERCEPTION_MODE": true}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "ISTIO_META_") {
			continue
		}
		key := strings.TrimPrefix(k, "ISTIO_META_")
		if known[key] {
			continue
		}
		if o.Metadata == nil {
			o.Metadata = map[string]string{}
		}
		o.Metadata[key] = v
	}
	return o
}
