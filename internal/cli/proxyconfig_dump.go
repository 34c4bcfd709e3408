package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// proxyDump is a decoded /config_dump.
type proxyDump struct {
	bootstrap *adminv3.BootstrapConfigDump
	secrets   []*adminv3.SecretsConfigDump_DynamicSecret
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []clusterEntry
	endpoints []*endpointv3.ClusterLoadAssignment
}

type clusterEntry struct {
	c       *clusterv3.Cluster
	dynamic bool
}

var unmarshalDump = protojson.UnmarshalOptions{DiscardUnknown: true}

// rawDump is the target's /config_dump JSON, or the saved file's.
func (t *pcTarget) rawDump() ([]byte, error) {
	if t.file != "" {
		b, err := os.ReadFile(t.file)
		if err != nil {
			return nil, fmt.Errorf("read config dump: %w", err)
		}
		return b, nil
	}
	return t.get("/config_dump?include_eds")
}

func (t *pcTarget) dump() (*proxyDump, error) {
	b, err := t.rawDump()
	if err != nil {
		return nil, err
	}
	return parseDump(b)
}

func parseDump(b []byte) (*proxyDump, error) {
	var cd adminv3.ConfigDump
	if err := unmarshalDump.Unmarshal(b, &cd); err != nil {
		return nil, fmt.Errorf("decode config dump: %w", err)
	}
	d := &proxyDump{}
	for _, a := range cd.GetConfigs() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode config dump entry %s: %w", a.GetTypeUrl(), err)
		}
		switch x := m.(type) {
		case *adminv3.BootstrapConfigDump:
			d.bootstrap = x
		case *adminv3.ListenersConfigDump:
			for _, s := range x.GetStaticListeners() {
				var l listenerv3.Listener
				if s.GetListener().UnmarshalTo(&l) == nil {
					d.listeners = append(d.listeners, &l)
				}
			}
			for _, dl := range x.GetDynamicListeners() {
				var l listenerv3.Listener
				if dl.GetActiveState().GetListener().UnmarshalTo(&l) == nil {
					d.listeners = append(d.listeners, &l)
				}
			}
		case *adminv3.ClustersConfigDump:
			for _, s := range x.GetStaticClusters() {
				var c clusterv3.Cluster
				if s.GetCluster().UnmarshalTo(&c) == nil {
					d.clusters = append(d.clusters, clusterEntry{&c, false})
				}
			}
			for _, dc := range x.GetDynamicActiveClusters() {
				var c clusterv3.Cluster
				if dc.GetCluster().UnmarshalTo(&c) == nil {
					d.clusters = append(d.clusters, clusterEntry{&c, true})
				}
			}
		case *adminv3.RoutesConfigDump:
			for _, s := range x.GetStaticRouteConfigs() {
				var r routev3.RouteConfiguration
				if s.GetRouteConfig().UnmarshalTo(&r) == nil {
					d.routes = append(d.routes, &r)
				}
			}
			for _, dr := range x.GetDynamicRouteConfigs() {
				var r routev3.RouteConfiguration
				if dr.GetRouteConfig().UnmarshalTo(&r) == nil {
					d.routes = append(d.routes, &r)
				}
			}
		case *adminv3.SecretsConfigDump:
			d.secrets = append(d.secrets, x.GetDynamicActiveSecrets()...)
		case *adminv3.EndpointsConfigDump:
			for _, s := range x.GetStaticEndpointConfigs() {
				var e endpointv3.ClusterLoadAssignment
				if s.GetEndpointConfig().UnmarshalTo(&e) == nil {
					d.endpoints = append(d.endpoints, &e)
				}
			}
			for _, de := range x.GetDynamicEndpointConfigs() {
				var e endpointv3.ClusterLoadAssignment
				if de.GetEndpointConfig().UnmarshalTo(&e) == nil {
					d.endpoints = append(d.endpoints, &e)
				}
			}
		}
	}
	sort.SliceStable(d.listeners, func(i, j int) bool { return listenerPort(d.listeners[i]) < listenerPort(d.listeners[j]) })
	sort.SliceStable(d.routes, func(i, j int) bool { return d.routes[i].GetName() < d.routes[j].GetName() })
	sort.SliceStable(d.clusters, func(i, j int) bool { return d.clusters[i].c.GetName() < d.clusters[j].c.GetName() })
	return d, nil
}

// printProtos renders a list of protos as a JSON array or YAML list.
func printProtos[T proto.Message](w io.Writer, format string, list []T) error {
	var raw []json.RawMessage
	for _, m := range list {
		b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(m)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	if raw == nil {
		raw = []json.RawMessage{}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return printJSON(w, format, b)
}

// printJSON writes the JSON document b indented, or as YAML. It goes
// through encoding/json for stable bytes (protojson's spacing is
// deliberately unstable).
func printJSON(w io.Writer, format string, b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	out, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		y, err := yaml.JSONToYAML(out)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 8, 1, ' ', 0) }

// istioName reads metadata filter_metadata["istio"]["config"]
// ("/apis/networking.istio.io/v1/namespaces/NS/KIND/NAME") as "NAME.NS".
func istioName(fields map[string]any) string {
	cfg, _ := fields["config"].(string)
	parts := strings.Split(strings.Trim(cfg, "/"), "/")
	for i := 0; i+3 < len(parts); i++ {
		if parts[i] == "namespaces" {
			return parts[i+3] + "." + parts[i+1]
		}
	}
	return ""
}
