package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

type proxyConfigFlags struct {
	adminAddress string
	stateDir     string
	output       string
	port         int
	name         string
	cluster      string
	fqdn         string
	subset       string
	direction    string
	address      string
	status       string
	file         string
	timeout      time.Duration
}

func newProxyConfigCmd() *cobra.Command {
	f := &proxyConfigFlags{}
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show a proxy's listeners, routes, clusters, endpoints or bootstrap",
		Long: `proxy-config reads a trellis-proxy's (or Envoy's) admin API — /config_dump and
/clusters — and prints it like istioctl proxy-config.

The target is a workload of the local mesh (NAME or NAME.NAMESPACE, found in
the state file that 'trellis demo' / the local runner writes), an admin
address (HOST:PORT), or, when omitted, --admin-address.`,
		Example: `  trellis proxy-config cluster sleep --fqdn nginx.sidecar.svc.cluster.local
  trellis proxy-config listener 127.0.0.1:15000 --port 15001
  trellis proxy-config route sleep --name 80 -o json
  trellis proxy-config endpoint sleep --cluster "outbound|80||nginx.sidecar.svc.cluster.local"`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:15000", "the proxy's admin address when no target is given")
	pf.StringVar(&f.stateDir, "state-dir", "", "directory of the local mesh's state files (default: the local runner's)")
	pf.StringVarP(&f.output, "output", "o", "short", "output format: short, json or yaml")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	pf.StringVarP(&f.file, "file", "f", "", "read a saved /config_dump JSON file instead of a live proxy")
	sub := []struct {
		use, short string
		run        func(*pcTarget, *proxyConfigFlags, io.Writer) error
		flags      func(c *cobra.Command)
	}{
		{"listener [POD-or-ADDR]", "listeners (ADDRESS PORT MATCH DESTINATION)", runListeners, func(c *cobra.Command) {
			c.Flags().IntVar(&f.port, "port", 0, "only listeners on this port")
			c.Flags().StringVar(&f.address, "address", "", "only listeners on this address")
			c.Flags().StringVar(&f.name, "name", "", "only the listener with this name")
		}},
		{"route [POD-or-ADDR]", "route configurations (NAME VHOST NAME DOMAINS MATCH VIRTUAL SERVICE)", runRoutes, func(c *cobra.Command) {
			c.Flags().StringVar(&f.name, "name", "", "only the route configuration with this name")
		}},
		{"cluster [POD-or-ADDR]", "clusters (SERVICE FQDN PORT SUBSET DIRECTION TYPE DESTINATION RULE)", runClusters, func(c *cobra.Command) {
			c.Flags().StringVar(&f.fqdn, "fqdn", "", "only clusters of this service FQDN")
			c.Flags().IntVar(&f.port, "port", 0, "only clusters of this port")
			c.Flags().StringVar(&f.subset, "subset", "", "only clusters of this subset")
			c.Flags().StringVar(&f.direction, "direction", "", "only inbound or outbound clusters")
		}},
		{"endpoint [POD-or-ADDR]", "endpoints (ENDPOINT STATUS OUTLIER CHECK CLUSTER)", runEndpoints, func(c *cobra.Command) {
			c.Flags().StringVar(&f.cluster, "cluster", "", "only endpoints of this cluster")
			c.Flags().StringVar(&f.address, "address", "", "only endpoints with this IP")
			c.Flags().IntVar(&f.port, "port", 0, "only endpoints on this port")
			c.Flags().StringVar(&f.status, "status", "", "only endpoints with this health status (e.g. HEALTHY)")
		}},
		{"bootstrap [POD-or-ADDR]", "bootstrap configuration", runBootstrap, nil},
		{"secret [POD-or-ADDR]", "SDS secrets (RESOURCE NAME TYPE STATUS VALID CERT SERIAL NUMBER NOT AFTER NOT BEFORE)", runSecrets, nil},
		{"all [POD-or-ADDR]", "listeners, routes, clusters and endpoints", runAll, nil},
	}
	var level string
	logCmd := &cobra.Command{
		Use:   "log [POD-or-ADDR]",
		Short: "Show or change a proxy's logging levels (--level LEVEL or --level NAME:LEVEL,...)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			target, err := resolveTarget(args, f)
			if err != nil {
				return err
			}
			return runLog(target, level, c.OutOrStdout())
		},
	}
	logCmd.Flags().StringVar(&level, "level", "", "level for every logger (trace, debug, info, warning, error, critical, off), or NAME:LEVEL pairs")
	cmd.AddCommand(logCmd)
	for _, s := range sub {
		s := s
		c := &cobra.Command{
			Use:     s.use,
			Short:   "Show a proxy's " + s.short,
			Args:    cobra.MaximumNArgs(1),
			Aliases: aliasesFor(strings.Fields(s.use)[0]),
			RunE: func(c *cobra.Command, args []string) error {
				if err := f.validate(); err != nil {
					return err
				}
				target, err := resolveTarget(args, f)
				if err != nil {
					return err
				}
				return s.run(target, f, c.OutOrStdout())
			},
		}
		if s.flags != nil {
			s.flags(c)
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func aliasesFor(name string) []string {
	switch name {
	case "listener":
		return []string{"listeners", "l"}
	case "route":
		return []string{"routes", "r"}
	case "cluster":
		return []string{"clusters", "c"}
	case "endpoint":
		return []string{"endpoints", "ep"}
	case "bootstrap":
		return []string{"b"}
	case "secret":
		return []string{"secrets", "s"}
	}
	return nil
}

func (f *proxyConfigFlags) validate() error {
	switch f.output {
	case "short", "json", "yaml":
	default:
		return fmt.Errorf("--output %q: use short, json or yaml", f.output)
	}
	switch f.direction {
	case "", "inbound", "outbound":
	default:
		return fmt.Errorf("--direction %q: use inbound or outbound", f.direction)
	}
	if f.port < 0 || f.port > 65535 {
		return fmt.Errorf("--port %d: must be within [0, 65535]", f.port)
	}
	return nil
}

// pcTarget is where a proxy's admin API is.
type pcTarget struct {
	file    string // a saved config dump instead of a live proxy
	address string
	netns   string // network namespace to dial from, or ""
	timeout time.Duration
}

// resolveTarget turns POD-or-ADDR into an admin address: HOST:PORT as is, a
// workload name through the local mesh's state files, none: --admin-address.
func resolveTarget(args []string, f *proxyConfigFlags) (*pcTarget, error) {
	t := &pcTarget{address: f.adminAddress, timeout: f.timeout, file: f.file}
	if f.file != "" {
		if len(args) > 0 {
			return nil, fmt.Errorf("give either --file or a target, not both")
		}
		return t, nil
	}
	if len(args) == 0 {
		return t, nil
	}
	arg := args[0]
	if _, _, err := net.SplitHostPort(arg); err == nil {
		t.address = arg
		return t, nil
	}
	name, ns, _ := strings.Cut(arg, ".")
	dir := local.StateDir(f.stateDir)
	paths, _ := filepath.Glob(filepath.Join(dir, "local-*.json"))
	var known []string
	for _, p := range paths {
		st, err := local.ReadState(p)
		if err != nil || st == nil {
			continue
		}
		for _, w := range st.Workloads {
			known = append(known, w.Name+"."+w.Namespace)
			if w.Name == name && (ns == "" || ns == w.Namespace) {
				if w.AdminAddress != "" {
					t.address = w.AdminAddress
				}
				t.netns = w.Netns
				return t, nil
			}
		}
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%q is not HOST:PORT and no local mesh is running (no state files in %s); pass the proxy's admin address, e.g. 127.0.0.1:15000", arg, dir)
	}
	sort.Strings(known)
	return nil, fmt.Errorf("workload %q not found in the local mesh; known workloads: %s", arg, strings.Join(known, ", "))
}

func (t *pcTarget) get(path string) ([]byte, error) { return t.do(http.MethodGet, path) }

func (t *pcTarget) do(method, path string) ([]byte, error) {
	tr := &http.Transport{Proxy: nil}
	if t.netns != "" {
		ns := t.netns
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, ns, network, addr)
		}
	}
	client := &http.Client{Transport: tr, Timeout: t.timeout}
	defer tr.CloseIdleConnections()
	url := "http://" + t.address + path
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, fmt.Errorf("admin request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the proxy's admin API: %w (is the proxy running with its admin on %s?)", err, t.address)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

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

func (t *pcTarget) dump() (*proxyDump, error) {
	if t.file != "" {
		b, err := os.ReadFile(t.file)
		if err != nil {
			return nil, fmt.Errorf("read config dump: %w", err)
		}
		return parseDump(b)
	}
	b, err := t.get("/config_dump?include_eds")
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
	// Re-indent through encoding/json: stable bytes (protojson's spacing
	// is deliberately unstable).
	var v any
	b, _ := json.Marshal(raw)
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

func listenerPort(l *listenerv3.Listener) uint32 {
	return l.GetAddress().GetSocketAddress().GetPortValue()
}

func runListeners(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	return printListeners(d, f, w)
}

func printListeners(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var ls []*listenerv3.Listener
	for _, l := range d.listeners {
		sa := l.GetAddress().GetSocketAddress()
		if f.port != 0 && int(sa.GetPortValue()) != f.port || f.address != "" && sa.GetAddress() != f.address || f.name != "" && l.GetName() != f.name {
			continue
		}
		ls = append(ls, l)
	}
	if f.output != "short" {
		return printProtos(w, f.output, ls)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ADDRESS\tPORT\tMATCH\tDESTINATION")
	for _, l := range ls {
		sa := l.GetAddress().GetSocketAddress()
		chains := l.GetFilterChains()
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains, dc)
		}
		for _, fc := range chains {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", sa.GetAddress(), sa.GetPortValue(), describeMatch(fc.GetFilterChainMatch()), describeDestination(fc))
		}
	}
	return tw.Flush()
}

func describeMatch(m *listenerv3.FilterChainMatch) string {
	var parts []string
	if m.GetDestinationPort() != nil {
		parts = append(parts, fmt.Sprintf("Addr: *:%d", m.GetDestinationPort().GetValue()))
	}
	for _, p := range m.GetPrefixRanges() {
		parts = append(parts, fmt.Sprintf("Addr: %s/%d", p.GetAddressPrefix(), p.GetPrefixLen().GetValue()))
	}
	if len(m.GetServerNames()) > 0 {
		parts = append(parts, "SNI: "+strings.Join(m.GetServerNames(), ","))
	}
	if tp := m.GetTransportProtocol(); tp != "" {
		parts = append(parts, "Trans: "+tp)
	}
	if len(m.GetApplicationProtocols()) > 0 {
		parts = append(parts, "App: "+strings.Join(m.GetApplicationProtocols(), ","))
	}
	if len(parts) == 0 {
		return "ALL"
	}
	return strings.Join(parts, "; ")
}

func describeDestination(fc *listenerv3.FilterChain) string {
	for _, flt := range fc.GetFilters() {
		tc := flt.GetTypedConfig()
		if tc == nil {
			continue
		}
		var hcm hcmv3.HttpConnectionManager
		if tc.MessageIs(&hcm) && tc.UnmarshalTo(&hcm) == nil {
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				return "Route: " + n
			}
			var matches []string
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					matches = append(matches, describeRouteMatch(r.GetMatch()))
				}
			}
			return "Inline Route: " + strings.Join(matches, "; ")
		}
		var tcp tcpv3.TcpProxy
		if tc.MessageIs(&tcp) && tc.UnmarshalTo(&tcp) == nil {
			if c := tcp.GetCluster(); c != "" {
				switch c {
				case "PassthroughCluster", "InboundPassthroughCluster", "BlackHoleCluster":
					return c
				}
				return "Cluster: " + c
			}
			var ws []string
			for _, wc := range tcp.GetWeightedClusters().GetClusters() {
				ws = append(ws, fmt.Sprintf("%s(%d)", wc.GetName(), wc.GetWeight()))
			}
			return "WeightedClusters: " + strings.Join(ws, ",")
		}
	}
	return "Non-HTTP/Non-TCP"
}

func describeRouteMatch(m *routev3.RouteMatch) string {
	var s string
	switch {
	case m.GetPrefix() != "":
		s = m.GetPrefix() + "*"
	case m.GetPath() != "":
		s = m.GetPath()
	case m.GetSafeRegex() != nil:
		s = m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		s = m.GetPathSeparatedPrefix() + "/*"
	default:
		s = "/*"
	}
	if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 {
		s += " (with conditions)"
	}
	return s
}

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

func runRoutes(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	return printRoutes(d, f, w)
}

// allRoutes are the route configurations of the dump plus the listeners'
// inline ones that the dump does not already list (Envoy lists them as
// static_route_configs; other proxies may not).
func allRoutes(d *proxyDump) []*routev3.RouteConfiguration {
	out := append([]*routev3.RouteConfiguration(nil), d.routes...)
	have := func(r *routev3.RouteConfiguration) bool {
		for _, o := range out {
			if proto.Equal(o, r) {
				return true
			}
		}
		return false
	}
	for _, l := range d.listeners {
		for _, fc := range l.GetFilterChains() {
			for _, flt := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if tc := flt.GetTypedConfig(); tc != nil && tc.MessageIs(&hcm) && tc.UnmarshalTo(&hcm) == nil && hcm.GetRouteConfig() != nil && !have(hcm.GetRouteConfig()) {
					out = append(out, hcm.GetRouteConfig())
				}
			}
		}
	}
	return out
}

func printRoutes(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var rs []*routev3.RouteConfiguration
	for _, r := range allRoutes(d) {
		if f.name == "" || r.GetName() == f.name {
			rs = append(rs, r)
		}
	}
	if f.output != "short" {
		return printProtos(w, f.output, rs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE")
	for _, rc := range rs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				vs := istioName(r.GetMetadata().GetFilterMetadata()["istio"].AsMap())
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), describeDomains(vh.GetDomains()), describeRouteMatch(r.GetMatch()), vs)
			}
		}
	}
	return tw.Flush()
}

// describeDomains collapses a virtual host's domains as istioctl does: the
// port variants are dropped and long lists are cut.
func describeDomains(ds []string) string {
	var out []string
	seen := map[string]bool{}
	for _, d := range ds {
		h := d
		if i := strings.LastIndexByte(d, ':'); i > 0 && !strings.Contains(d[:i], ":") {
			h = d[:i]
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if len(out) > 2 {
		return fmt.Sprintf("%s, %s + %d more...", out[0], out[1], len(out)-2)
	}
	return strings.Join(out, ", ")
}

// clusterParts splits "DIRECTION|PORT|SUBSET|FQDN".
func clusterParts(name string) (direction, port, subset, fqdn string) {
	p := strings.Split(name, "|")
	if len(p) != 4 || (p[0] != "inbound" && p[0] != "outbound") {
		return "", "", "", name
	}
	return p[0], p[1], p[2], p[3]
}

func runClusters(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	return printClusters(d, f, w)
}

func printClusters(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var cs []*clusterv3.Cluster
	for _, e := range d.clusters {
		dir, port, subset, fqdn := clusterParts(e.c.GetName())
		if f.fqdn != "" && fqdn != f.fqdn || f.port != 0 && port != strconv.Itoa(f.port) ||
			f.subset != "" && subset != f.subset || f.direction != "" && dir != f.direction {
			continue
		}
		cs = append(cs, e.c)
	}
	if f.output != "short" {
		return printProtos(w, f.output, cs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE")
	for _, c := range cs {
		dir, port, subset, fqdn := clusterParts(c.GetName())
		typ := c.GetType().String()
		if c.GetClusterType() != nil {
			typ = c.GetClusterType().GetName()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fqdn, dash(port), dash(subset), dash(dir), typ,
			istioName(c.GetMetadata().GetFilterMetadata()["istio"].AsMap()))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runEndpoints(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	b, err := t.clustersJSON()
	if err != nil {
		return err
	}
	return printEndpoints(b, f, w)
}

// clustersJSON is /clusters?format=json, or for a saved dump the same
// shape built from its endpoint configs (EDS health only).
func (t *pcTarget) clustersJSON() ([]byte, error) {
	if t.file == "" {
		return t.get("/clusters?format=json")
	}
	d, err := t.dump()
	if err != nil {
		return nil, err
	}
	out := &adminv3.Clusters{}
	for _, e := range d.endpoints {
		cs := &adminv3.ClusterStatus{Name: e.GetClusterName()}
		for _, le := range e.GetEndpoints() {
			for _, lbe := range le.GetLbEndpoints() {
				hs := lbe.GetHealthStatus()
				if hs == corev3.HealthStatus_UNKNOWN {
					hs = corev3.HealthStatus_HEALTHY
				}
				cs.HostStatuses = append(cs.HostStatuses, &adminv3.HostStatus{
					Address:      lbe.GetEndpoint().GetAddress(),
					HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: hs},
					Priority:     le.GetPriority(),
				})
			}
		}
		out.ClusterStatuses = append(out.ClusterStatuses, cs)
	}
	return protojson.Marshal(out)
}

func printEndpoints(b []byte, f *proxyConfigFlags, w io.Writer) error {
	var cs adminv3.Clusters
	if err := unmarshalDump.Unmarshal(b, &cs); err != nil {
		return fmt.Errorf("decode /clusters: %w", err)
	}
	type row struct {
		endpoint, status, outlier, cluster string
		host                               *adminv3.HostStatus
	}
	var rows []row
	for _, c := range cs.GetClusterStatuses() {
		if f.cluster != "" && c.GetName() != f.cluster {
			continue
		}
		for _, h := range c.GetHostStatuses() {
			sa := h.GetAddress().GetSocketAddress()
			if f.address != "" && sa.GetAddress() != f.address || f.port != 0 && int(sa.GetPortValue()) != f.port {
				continue
			}
			status := h.GetHealthStatus().GetEdsHealthStatus().String()
			if h.GetHealthStatus().GetFailedActiveHealthCheck() {
				status = "UNHEALTHY"
			}
			if f.status != "" && !strings.EqualFold(status, f.status) {
				continue
			}
			outlier := "OK"
			if h.GetHealthStatus().GetFailedOutlierCheck() {
				outlier = "FAILED"
			}
			rows = append(rows, row{net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), status, outlier, c.GetName(), h})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].endpoint != rows[j].endpoint {
			return rows[i].endpoint < rows[j].endpoint
		}
		return rows[i].cluster < rows[j].cluster
	})
	if f.output != "short" {
		var hs []*adminv3.ClusterStatus
		for _, c := range cs.GetClusterStatuses() {
			keep := &adminv3.ClusterStatus{Name: c.GetName(), AddedViaApi: c.GetAddedViaApi(), EdsServiceName: c.GetEdsServiceName()}
			for _, r := range rows {
				if r.cluster == c.GetName() {
					keep.HostStatuses = append(keep.HostStatuses, r.host)
				}
			}
			if len(keep.HostStatuses) > 0 {
				hs = append(hs, keep)
			}
		}
		return printProtos(w, f.output, hs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.endpoint, r.status, r.outlier, r.cluster)
	}
	return tw.Flush()
}

func runBootstrap(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	if d.bootstrap == nil {
		return errors.New("the config dump has no bootstrap")
	}
	format := f.output
	if format == "short" {
		format = "json"
	}
	if err := printProtos(w, format, []*adminv3.BootstrapConfigDump{d.bootstrap}); err != nil {
		return err
	}
	return nil
}

func runAll(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	if f.output != "short" {
		var b []byte
		var err error
		if t.file != "" {
			b, err = os.ReadFile(t.file)
		} else {
			b, err = t.get("/config_dump?include_eds")
		}
		if err != nil {
			return err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode config dump: %w", err)
		}
		out, _ := json.MarshalIndent(v, "", "    ")
		if f.output == "yaml" {
			out, err = yaml.JSONToYAML(out)
			if err != nil {
				return err
			}
			_, err = w.Write(out)
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	}
	d, err := t.dump()
	if err != nil {
		return err
	}
	b, err := t.clustersJSON()
	if err != nil {
		return err
	}
	for i, p := range []func() error{
		func() error { return printClusters(d, f, w) },
		func() error { return printListeners(d, f, w) },
		func() error { return printRoutes(d, f, w) },
		func() error { return printEndpoints(b, f, w) },
	} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := p(); err != nil {
			return err
		}
	}
	return nil
}

// runLog shows (GET) or sets (POST) /logging levels.
func runLog(t *pcTarget, level string, w io.Writer) error {
	if level == "" {
		b, err := t.get("/logging")
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	q := make([]string, 0, 2)
	for _, part := range strings.Split(level, ",") {
		name, lv, ok := strings.Cut(part, ":")
		if !ok {
			q = append(q, "level="+part)
			continue
		}
		q = append(q, name+"="+lv)
	}
	b, err := t.post("/logging?" + strings.Join(q, "&"))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (t *pcTarget) post(path string) ([]byte, error) {
	return t.do(http.MethodPost, path)
}

func runSecrets(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	var list []*tlsv3.Secret
	for _, ds := range d.secrets {
		var s tlsv3.Secret
		if err := ds.GetSecret().UnmarshalTo(&s); err != nil {
			return fmt.Errorf("secret %q: %w", ds.GetName(), err)
		}
		list = append(list, &s)
	}
	if f.output != "short" {
		return printProtos(w, f.output, list)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE")
	for _, s := range list {
		typ, pemData := "Cert Chain", []byte(s.GetTlsCertificate().GetCertificateChain().GetInlineString())
		if s.GetTlsCertificate() == nil {
			typ, pemData = "CA", []byte(s.GetValidationContext().GetTrustedCa().GetInlineString())
		}
		if len(pemData) == 0 {
			pemData = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		}
		valid, serial, notAfter, notBefore := "false", "", "", ""
		if block, _ := pem.Decode(pemData); block != nil {
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				valid = strconv.FormatBool(time.Now().Before(cert.NotAfter) && time.Now().After(cert.NotBefore))
				serial = cert.SerialNumber.Text(16)
				notAfter = cert.NotAfter.UTC().Format(time.RFC3339)
				notBefore = cert.NotBefore.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\tACTIVE\t%s\t%s\t%s\t%s\n", s.GetName(), typ, valid, serial, notAfter, notBefore)
	}
	return tw.Flush()
}
