package authz

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/proxy/listener"
)

// An inbound listener shaped as trellisd's for two TCP ports: 8080 under
// PERMISSIVE (an mTLS chain and a plain-text one), 9090 STRICT (mTLS
// only), each with its DENY and ALLOW network RBAC.
const inbound = `name: virtualInbound
address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
filter_chains:
- name: inbound|8080||
  filter_chain_match: {destination_port: 8080, transport_protocol: tls, application_protocols: [istio]}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: default}]
        validation_context_sds_secret_config: {name: ROOTCA}
  filters: [` + denyDB + `, ` + allowFront + `, ` + tcpProxy + `]
- name: inbound|8080||
  filter_chain_match: {destination_port: 8080}
  filters: [` + denyDB + `, ` + allowFront + `, ` + tcpProxy + `]
- name: inbound|9090||
  filter_chain_match: {destination_port: 9090, transport_protocol: tls, application_protocols: [istio]}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: default}]
        validation_context_sds_secret_config: {name: ROOTCA}
  filters: [` + allowFront + `, ` + tcpProxy + `]
`

const (
	denyDB = `{name: envoy.filters.network.rbac, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: rbac_deny.,
    rules: {action: DENY, policies: {"ns[shop]-policy[deny-from-db]-rule[0]": {permissions: [{any: true}], principals: [{authenticated: {principal_name: {exact: "spiffe://cluster.local/ns/shop/sa/db"}}}]}}}}}`
	allowFront = `{name: envoy.filters.network.rbac, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: rbac.,
    rules: {policies: {"ns[shop]-policy[allow-front]-rule[2]": {permissions: [{any: true}], principals: [{authenticated: {principal_name: {exact: "spiffe://cluster.local/ns/shop/sa/front"}}}]},
      "ns[shop]-policy[allow-lan]-rule[0]": {permissions: [{any: true}], principals: [{direct_remote_ip: {address_prefix: 10.1.0.0, prefix_len: 16}}]}}}}}`
	tcpProxy = `{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: app, cluster: app}}`
)

func compile(t *testing.T) map[string]*listener.Listener {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(inbound))
	if err != nil {
		t.Fatal(err)
	}
	var l listenerv3.Listener
	if err := protojson.Unmarshal(js, &l); err != nil {
		t.Fatal(err)
	}
	c, err := listener.Compile(&l, listener.Compilers{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*listener.Listener{c.Name: c}
}

// The destination port picks the chain, a principal the mTLS one, and
// the chain's network RBAC decides, naming policy and rule.
func TestCheckPicksTheChainOfThePort(t *testing.T) {
	ls := compile(t)
	const front, db = "spiffe://cluster.local/ns/shop/sa/front", "spiffe://cluster.local/ns/shop/sa/db"
	for _, tt := range []struct {
		name    string
		q       Query
		allowed bool
		chain   string
		reason  string
	}{
		{"front over mTLS to 8080", Query{Port: 8080, Principal: front}, true, "inbound|8080||", "allowed by ALLOW policy shop/allow-front rule 2"},
		{"db over mTLS to 8080: DENY first", Query{Port: 8080, Principal: db}, false, "inbound|8080||", "denied by DENY policy shop/deny-from-db rule 0 (the connection is closed)"},
		{"plain text from the LAN to 8080", Query{Port: 8080, SourceIP: "10.1.2.3"}, true, "inbound|8080||", "allowed by ALLOW policy shop/allow-lan rule 0"},
		{"plain text from elsewhere to 8080", Query{Port: 8080, SourceIP: "10.2.0.1"}, false, "inbound|8080||", "no ALLOW policy matched (the connection is closed)"},
		{"front to 9090", Query{Port: 9090, Namespace: "shop", Principal: front}, true, "inbound|9090||", "allowed by ALLOW policy shop/allow-front rule 2"},
		{"plain text to STRICT 9090", Query{Port: 9090, SourceIP: "10.1.2.3"}, false, "", "no filter chain of listener virtualInbound matches the connection (port 9090, plain text): the proxy closes it"},
		{"no chain for 7070", Query{Port: 7070, Principal: front}, false, "", "no filter chain of listener virtualInbound matches the connection (port 7070, mTLS from " + front + "): the proxy closes it"},
	} {
		a, err := Check(ls, tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if a.Allowed != tt.allowed || a.FilterChain != tt.chain || a.Reason != tt.reason {
			t.Errorf("%s: got allowed=%v chain %q reason %q, want %v %q %q", tt.name, a.Allowed, a.FilterChain, a.Reason, tt.allowed, tt.chain, tt.reason)
		}
	}
	l, err := Policies(ls, "15006")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range l.Policies {
		got = append(got, p.Action+" "+p.Namespace+"/"+p.Name)
	}
	if want := "DENY shop/deny-from-db,ALLOW shop/allow-front,ALLOW shop/allow-lan"; strings.Join(got, ",") != want {
		t.Errorf("policies %s, want %s", strings.Join(got, ","), want)
	}
}

func TestCheckRejectsBadQueries(t *testing.T) {
	ls := compile(t)
	for _, tt := range []struct {
		q    Query
		want string
	}{
		{Query{Listener: "0.0.0.0_80"}, `listener "0.0.0.0_80": the proxy has no such listener; it has virtualInbound (0.0.0.0:15006)`},
		{Query{SourceIP: "nope"}, `source_ip: "nope" is not an IP address`},
		{Query{DestinationIP: "1.2.3"}, `destination_ip: "1.2.3" is not an IP address`},
		{Query{Path: "api"}, `path: "api" must start with /`},
		{Query{Namespace: "a", Principal: "spiffe://cluster.local/ns/b/sa/c"}, `namespace: "a" is not the namespace of principal`},
		{Query{Headers: []Header{{Name: ":path", Value: "/"}}}, `headers[0].name: ":path" is not a header name`},
	} {
		if _, err := Check(ls, tt.q); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.q, err, tt.want)
		}
	}
}
