package admin

import (
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trellis-mesh/trellis/internal/proxy/xdsclient"
)

// ConfigSource produces the proxy's configuration in Envoy's
// /config_dump shape. It must be safe for concurrent use.
type ConfigSource interface {
	ConfigDump() (*adminv3.ConfigDump, error)
}

// XDSDump is the ConfigSource of a proxy fed by a bootstrap and an xDS
// client: static resources from the bootstrap, dynamic ones with their
// versions and update times from the client.
type XDSDump struct {
	Bootstrap *bootstrapv3.Bootstrap
	// Client may be nil (a bootstrap-only proxy).
	Client *xdsclient.Client
	// Started is when the bootstrap was loaded (static last_updated).
	Started time.Time
	// Warming, when set, reports whether the named LDS listener's latest
	// version is still warming and, if so, the version still active (nil
	// for a brand-new listener); the dump then shows the latest version
	// as warming_state, like Envoy's dynamic_warming_listeners.
	Warming func(name string) (active proto.Message, warming bool)
}

// ConfigDump builds the dump: bootstrap, listeners, clusters, routes,
// endpoints — in Envoy's order.
func (d *XDSDump) ConfigDump() (*adminv3.ConfigDump, error) {
	started := timestamppb.New(d.Started)
	bs := &adminv3.BootstrapConfigDump{Bootstrap: d.Bootstrap, LastUpdated: started}
	lds := &adminv3.ListenersConfigDump{}
	cds := &adminv3.ClustersConfigDump{}
	rds := &adminv3.RoutesConfigDump{}
	eds := &adminv3.EndpointsConfigDump{}
	for _, l := range d.Bootstrap.GetStaticResources().GetListeners() {
		a, err := anypb.New(l)
		if err != nil {
			return nil, err
		}
		lds.StaticListeners = append(lds.StaticListeners, &adminv3.ListenersConfigDump_StaticListener{Listener: a, LastUpdated: started})
	}
	for _, c := range d.Bootstrap.GetStaticResources().GetClusters() {
		a, err := anypb.New(c)
		if err != nil {
			return nil, err
		}
		cds.StaticClusters = append(cds.StaticClusters, &adminv3.ClustersConfigDump_StaticCluster{Cluster: a, LastUpdated: started})
		if la := c.GetLoadAssignment(); la != nil {
			ea, err := anypb.New(la)
			if err != nil {
				return nil, err
			}
			eds.StaticEndpointConfigs = append(eds.StaticEndpointConfigs, &adminv3.EndpointsConfigDump_StaticEndpointConfig{EndpointConfig: ea, LastUpdated: started})
		}
	}
	if c := d.Client; c != nil {
		status := map[string]xdsclient.TypeStatus{}
		for _, s := range c.Status() {
			status[s.TypeURL] = s
		}
		lds.VersionInfo = status[resourcev3.ListenerType].Version
		cds.VersionInfo = status[resourcev3.ClusterType].Version
		for _, r := range c.Resources(resourcev3.ListenerType) {
			st := &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: r.Resource, LastUpdated: timestamppb.New(r.LastUpdated)}
			dl := &adminv3.ListenersConfigDump_DynamicListener{Name: r.Name, ActiveState: st}
			if d.Warming != nil {
				if active, warming := d.Warming(r.Name); warming {
					dl.WarmingState, dl.ActiveState = st, nil
					if active != nil {
						a, err := anypb.New(active)
						if err != nil {
							return nil, err
						}
						dl.ActiveState = &adminv3.ListenersConfigDump_DynamicListenerState{Listener: a}
					}
				}
			}
			lds.DynamicListeners = append(lds.DynamicListeners, dl)
		}
		for _, r := range c.Resources(resourcev3.ClusterType) {
			cds.DynamicActiveClusters = append(cds.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
				VersionInfo: r.Version, Cluster: r.Resource, LastUpdated: timestamppb.New(r.LastUpdated)})
		}
		for _, r := range c.RouteConfigs() {
			rds.DynamicRouteConfigs = append(rds.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
				VersionInfo: r.Version, RouteConfig: r.Resource, LastUpdated: timestamppb.New(r.LastUpdated)})
		}
		for _, r := range c.Resources(resourcev3.EndpointType) {
			eds.DynamicEndpointConfigs = append(eds.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
				VersionInfo: r.Version, EndpointConfig: r.Resource, LastUpdated: timestamppb.New(r.LastUpdated)})
		}
		// A rejected update shows as error_state on every listener/cluster
		// of that type, as Envoy reports the failed attempt.
		if s := status[resourcev3.ListenerType]; s.LastError != "" {
			for _, l := range lds.DynamicListeners {
				l.ErrorState = &adminv3.UpdateFailureState{Details: s.LastError, VersionInfo: s.Version}
			}
		}
		if s := status[resourcev3.ClusterType]; s.LastError != "" {
			for _, cl := range cds.DynamicActiveClusters {
				cl.ErrorState = &adminv3.UpdateFailureState{Details: s.LastError, VersionInfo: s.Version}
			}
		}
	}
	msgs := []proto.Message{bs, lds, cds, rds, eds}
	if d.Client != nil {
		if secrets := d.Client.Resources(resourcev3.SecretType); len(secrets) > 0 {
			sds := &adminv3.SecretsConfigDump{}
			for _, r := range secrets {
				red, err := redactSecret(r.Resource)
				if err != nil {
					return nil, err
				}
				sds.DynamicActiveSecrets = append(sds.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{
					Name: r.Name, VersionInfo: r.Version, LastUpdated: timestamppb.New(r.LastUpdated), Secret: red})
			}
			msgs = append(msgs, sds)
		}
	}
	// Route configurations inline in listeners' connection managers are
	// Envoy's static_route_configs.
	for _, l := range lds.GetStaticListeners() {
		rds.StaticRouteConfigs = append(rds.StaticRouteConfigs, inlineRoutes(l.GetListener(), l.GetLastUpdated())...)
	}
	for _, l := range lds.GetDynamicListeners() {
		rds.StaticRouteConfigs = append(rds.StaticRouteConfigs, inlineRoutes(l.GetActiveState().GetListener(), l.GetActiveState().GetLastUpdated())...)
	}
	out := &adminv3.ConfigDump{}
	for _, msg := range msgs {
		a, err := anypb.New(msg)
		if err != nil {
			return nil, err
		}
		out.Configs = append(out.Configs, a)
	}
	return out, nil
}

// redactSecret hides private keys and generic secrets, as Envoy's
// /config_dump does.
func redactSecret(a *anypb.Any) (*anypb.Any, error) {
	var s tlsv3.Secret
	if err := a.UnmarshalTo(&s); err != nil {
		return nil, err
	}
	redacted := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}
	if c := s.GetTlsCertificate(); c != nil && c.GetPrivateKey() != nil {
		c.PrivateKey = redacted
	}
	if g := s.GetGenericSecret(); g != nil && g.GetSecret() != nil {
		g.Secret = redacted
	}
	return anypb.New(&s)
}

// inlineRoutes returns the route_config of every HTTP connection manager
// of a listener.
func inlineRoutes(a *anypb.Any, updated *timestamppb.Timestamp) []*adminv3.RoutesConfigDump_StaticRouteConfig {
	var l listenerv3.Listener
	if a.UnmarshalTo(&l) != nil {
		return nil
	}
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains, d)
	}
	var out []*adminv3.RoutesConfigDump_StaticRouteConfig
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			tc := f.GetTypedConfig()
			if tc == nil || !tc.MessageIs(&hcm) || tc.UnmarshalTo(&hcm) != nil || hcm.GetRouteConfig() == nil {
				continue
			}
			ra, err := anypb.New(hcm.GetRouteConfig())
			if err != nil {
				continue
			}
			out = append(out, &adminv3.RoutesConfigDump_StaticRouteConfig{RouteConfig: ra, LastUpdated: updated})
		}
	}
	return out
}
