package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
)

type tables map[string]*httpconn.RouteTable

func (t tables) Table(name string) *httpconn.RouteTable {
	if t[name] == nil {
		t[name] = &httpconn.RouteTable{Name: name}
	}
	return t[name]
}

func tcpChain(name, match string) string {
	return `
- name: ` + name + `
  filter_chain_match: ` + match + `
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: ` + name + `
      cluster: ` + name
}

func compileYAML(t *testing.T, y string) (*Listener, error) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var l listenerv3.Listener
	if err := protojson.Unmarshal(js, &l); err != nil {
		t.Fatalf("decode: %v\n%s", err, y)
	}
	return Compile(&l, Compilers{Routes: tables{}})
}

func TestFilterChainMatch(t *testing.T) {
	l, err := compileYAML(t, `
name: virtualInbound
address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
listener_filters:
- name: envoy.filters.listener.original_dst
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
filter_chains:`+
		tcpChain("port-9080", "{destination_port: 9080}")+
		tcpChain("port-9080-tls", "{destination_port: 9080, transport_protocol: tls}")+
		tcpChain("port-9080-h2c", "{destination_port: 9080, application_protocols: [h2c]}")+
		tcpChain("vip-10", "{destination_port: 6379, prefix_ranges: [{address_prefix: 10.96.0.10, prefix_len: 32}]}")+
		tcpChain("net-10", "{destination_port: 6379, prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}")+
		tcpChain("sni-exact", "{server_names: [api.example.com], transport_protocol: tls}")+
		tcpChain("sni-wild", "{server_names: ['*.example.com'], transport_protocol: tls}")+
		tcpChain("fallback", "{}"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    ConnFacts
		want string
	}{
		{name: "destination port", f: ConnFacts{DstIP: ip("10.1.1.1"), DstPort: 9080, Transport: "raw_buffer", ALPN: []string{"http/1.1"}}, want: "port-9080"},
		{name: "port and tls", f: ConnFacts{DstIP: ip("10.1.1.1"), DstPort: 9080, Transport: "tls"}, want: "port-9080-tls"},
		{name: "port and alpn", f: ConnFacts{DstIP: ip("10.1.1.1"), DstPort: 9080, Transport: "raw_buffer", ALPN: []string{"h2c"}}, want: "port-9080-h2c"},
		{name: "most specific prefix", f: ConnFacts{DstIP: ip("10.96.0.10"), DstPort: 6379}, want: "vip-10"},
		{name: "shorter prefix", f: ConnFacts{DstIP: ip("10.96.0.11"), DstPort: 6379}, want: "net-10"},
		{name: "no prefix matches", f: ConnFacts{DstIP: ip("192.168.0.1"), DstPort: 6379}, want: ""},
		{name: "sni exact", f: ConnFacts{DstPort: 443, Transport: "tls", ServerName: "api.example.com"}, want: "sni-exact"},
		{name: "sni wildcard", f: ConnFacts{DstPort: 443, Transport: "tls", ServerName: "www.example.com"}, want: "sni-wild"},
		{name: "sni unknown falls back", f: ConnFacts{DstPort: 443, Transport: "tls", ServerName: "other.org"}, want: "fallback"},
		{name: "other port", f: ConnFacts{DstPort: 1234, Transport: "raw_buffer"}, want: "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := l.Match(&tt.f)
			got := ""
			if c != nil {
				got = c.Name
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{name: "no chains", yaml: `{name: a, address: {socket_address: {address: 0.0.0.0, port_value: 1}}}`, want: "at least one filter chain"},
		{name: "bad address", yaml: `{name: a, address: {socket_address: {address: localhost, port_value: 1}}, filter_chains: [{filters: []}]}`, want: `address: "localhost" is not an IP address`},
		{name: "unknown network filter", yaml: `{name: a, address: {socket_address: {address: 0.0.0.0, port_value: 1}}, filter_chains: [{filters: [{name: envoy.filters.network.redis_proxy}]}]}`, want: `filter_chains[0].filters[0].name: network filter "envoy.filters.network.redis_proxy" is not supported`},
		// Istio's east-west gateway (AUTO_PASSTHROUGH on 15443) picks the
		// tcp_proxy cluster from the SNI with sni_cluster: not supported,
		// so the listener is NACKed rather than served without it.
		{name: "east-west gateway sni_cluster", yaml: `
name: 0.0.0.0_15443
address: {socket_address: {address: 0.0.0.0, port_value: 15443}}
listener_filters: [{name: envoy.filters.listener.tls_inspector}]
filter_chains:
- filter_chain_match: {server_names: ["*.seed.svc.cluster.local"]}
  filters:
  - {name: envoy.filters.network.sni_cluster}
  - {name: envoy.filters.network.tcp_proxy}`, want: `filter_chains[0].filters[0].name: network filter "envoy.filters.network.sni_cluster" is not supported`},
		{name: "stats filter unknown field", yaml: statsChain("{metrics: [{name: tcp_sent_bytes_total, match: \"x\"}]}", true), want: `filter_chains[0].filters[0].typed_config.value.metrics[0].match: not supported by trellis-proxy`},
		{name: "stats filter unknown metric", yaml: statsChain("{metrics: [{name: tcp_bytes}]}", true), want: `filter_chains[0].filters[0].typed_config.value.metrics[0].name: "tcp_bytes" is not a standard metric`},
		{name: "stats filter last", yaml: statsChain("{metrics: []}", false), want: `filter_chains[0].filters[0]: "istio.stats" must be followed by tcp_proxy`},
		{name: "duplicate match", yaml: `
name: a
address: {socket_address: {address: 0.0.0.0, port_value: 1}}
filter_chains:` + tcpChain("cx", "{destination_port: 80}") + tcpChain("cy", "{destination_port: 80}"), want: "same filter_chain_match as filter_chains[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// clientHello captures a real ClientHello from crypto/tls.
func clientHello(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(time.Second))
		c.Handshake()
		a.Close()
	}()
	b.SetDeadline(time.Now().Add(time.Second))
	hdr := make([]byte, 5)
	if _, err := readFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	body := make([]byte, n)
	if _, err := readFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestParseClientHello(t *testing.T) {
	rec := clientHello(t, "reviews.example.com", []string{"h2", "http/1.1"})
	sni, alpn, err := ParseClientHello(rec)
	if err != nil {
		t.Fatal(err)
	}
	if sni != "reviews.example.com" || strings.Join(alpn, ",") != "h2,http/1.1" {
		t.Errorf("got %q %v, want reviews.example.com [h2 http/1.1]", sni, alpn)
	}
	if _, _, err := ParseClientHello(rec[:len(rec)-10]); err == nil {
		t.Error("got no error for a truncated hello")
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name          string
		data          []byte
		wantTransport string
		wantALPN      string
		wantSNI       string
	}{
		{name: "http/1.1", data: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantTransport: "raw_buffer", wantALPN: "http/1.1"},
		{name: "h2c preface", data: []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), wantTransport: "raw_buffer", wantALPN: "h2c"},
		{name: "opaque tcp", data: []byte("*1\r\n$4\r\nPING\r\n"), wantTransport: "raw_buffer"},
		{name: "tls", data: clientHello(t, "a.example", []string{"istio"}), wantTransport: "tls", wantALPN: "istio", wantSNI: "a.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() { a.Write(tt.data) }()
			br := bufio.NewReader(b)
			var f ConnFacts
			sniff(b, br, time.Second, &f)
			if f.Transport != tt.wantTransport || strings.Join(f.ALPN, ",") != tt.wantALPN || f.ServerName != tt.wantSNI {
				t.Errorf("got %s %v %q, want %s %s %q", f.Transport, f.ALPN, f.ServerName, tt.wantTransport, tt.wantALPN, tt.wantSNI)
			}
			// Sniffing must not consume: the bytes are still there.
			got := make([]byte, len(tt.data))
			if _, err := br.Read(got); err != nil || !bytes.Equal(got[:br.Buffered()+len(got)-br.Buffered()], tt.data[:len(got)]) {
				t.Errorf("sniffing consumed bytes")
			}
			a.Close()
			b.Close()
		})
	}
}

func TestSniffServerFirstTimesOut(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var f ConnFacts
	sniff(b, bufio.NewReader(b), 50*time.Millisecond, &f)
	if f.Sniffed || f.Transport != "raw_buffer" {
		t.Errorf("got sniffed=%v transport=%s, want an unsniffed raw_buffer connection", f.Sniffed, f.Transport)
	}
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "x.example", []string{"h2"}))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		sni, alpn, err := ParseClientHello(data)
		if err != nil && (sni != "" || alpn != nil) {
			t.Fatalf("got values %q %v with error %v", sni, alpn, err)
		}
		if len(sni) > len(data) {
			t.Fatalf("server name longer than the input")
		}
	})
}

// statsChain is a listener whose chain has an istio.stats network filter
// with value, before a tcp_proxy when proxy is set.
func statsChain(value string, proxy bool) string {
	y := `
name: a
address: {socket_address: {address: 0.0.0.0, port_value: 1}}
filter_chains:
- filters:
  - name: istio.stats
    typed_config:
      "@type": type.googleapis.com/udpa.type.v1.TypedStruct
      type_url: type.googleapis.com/stats.PluginConfig
      value: ` + value
	if proxy {
		y += `
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: a
      cluster: a`
	}
	return y
}

func TestStatsNetworkFilter(t *testing.T) {
	l, err := compileYAML(t, statsChain("{metrics: [{name: tcp_sent_bytes_total, drop: true}]}", true))
	if err != nil {
		t.Fatal(err)
	}
	if m := l.Chains[0].TCP.Metrics; m == nil {
		t.Errorf("got no stats config on the tcp_proxy, want the istio.stats filter's")
	}
}
