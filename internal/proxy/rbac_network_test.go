package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/authz"
)

// TestNetworkRBACClosesDeniedConnections serves two TCP listeners whose
// tcp_proxy is preceded by envoy.filters.network.rbac, as trellisd emits
// for a workload's TCP port: the connection an ALLOW policy admits is
// proxied, the one it does not is closed before any byte reaches the
// upstream, and the closing is logged with the deciding policy.
func TestNetworkRBACClosesDeniedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	logs := &syncBuffer{}
	r := startProxy(t, nil, []testCluster{{Name: "echo", Addrs: []string{ln.Addr().String()}}}, func(p *Proxy) {
		p.Listeners.Logf = func(format string, args ...any) {
			logs.Write([]byte(strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n"))
		}
	})
	listener := func(name, octet, principal string) *anypb.Any {
		y := `name: ` + name + `
address: {socket_address: {address: 127.0.0.` + octet + `, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.rbac
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
      stat_prefix: tcp.
      rules:
        policies:
          ns[default]-policy[db]-rule[0]:
            permissions: [{and_rules: {rules: [{any: true}]}}]
            principals: [{and_ids: {ids: [{or_ids: {ids: [` + principal + `]}}]}}]
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: echo
      cluster: echo
`
		var l listenerv3.Listener
		if err := yamlToProto([]byte(y), &l); err != nil {
			t.Fatal(err)
		}
		a, _ := anypb.New(&l)
		return a
	}
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{
		"allowed": listener("allowed", "1", "{direct_remote_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}"),
		"denied":  listener("denied", "2", "{direct_remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}"),
	}); err != nil {
		t.Fatal(err)
	}
	allowed, denied := r.addr(t, "allowed"), r.addr(t, "denied")
	roundTrip := func(addr string) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return "", err
		}
		b := make([]byte, 4)
		_, err = io.ReadFull(c, b)
		return string(b), err
	}
	if got, err := roundTrip(allowed); err != nil || got != "ping" {
		t.Errorf("allowed: got %q, %v; want the echo", got, err)
	}
	if got, err := roundTrip(denied); err == nil {
		t.Errorf("denied: got %q, want the connection closed", got)
	}
	// authz.Check answers for the same connections as they were served.
	for _, tt := range []struct{ listener, reason string }{
		{"allowed", "allowed by ALLOW policy default/db rule 0"},
		{"denied", "no ALLOW policy matched (the connection is closed)"},
	} {
		a, err := authz.Check(r.p.Listeners.Listeners(), authz.Query{Listener: tt.listener, SourceIP: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Reason != tt.reason || a.Allowed != (tt.listener == "allowed") || len(a.Verdicts) != 1 || a.Verdicts[0].Kind != "network" {
			t.Errorf("check %s: got %+v, want %q", tt.listener, a, tt.reason)
		}
	}
	if !strings.Contains(logs.String(), `rbac: connection from 127.0.0.1:`) || !strings.Contains(logs.String(), "closed: enforced denied, rbac_access_denied_matched_policy[none]") {
		t.Errorf("log lacks the denial:\n%s", logs.String())
	}
}
