package registry

import (
	"reflect"
	"testing"
)

func TestResolveHost(t *testing.T) {
	tests := []struct {
		name, host, ns, suffix, want string
	}{
		{"short name", "bill-service", "istio-demo", "", "bill-service.istio-demo.svc.cluster.local"},
		{"custom suffix", "bill-service", "istio-demo", "corp.local", "bill-service.istio-demo.svc.corp.local"},
		{"empty namespace is default", "flaskapp", "", "", "flaskapp.default.svc.cluster.local"},
		{"fqdn kept", "worker-service.default.svc.cluster.local", "other", "", "worker-service.default.svc.cluster.local"},
		{"name.ns kept as written", "reviews.prod", "default", "", "reviews.prod"},
		{"external kept", "simple.zhongmingmao.io", "simple", "", "simple.zhongmingmao.io"},
		{"wildcard kept", "*.example.com", "x", "", "*.example.com"},
		{"star kept", "*", "x", "", "*"},
		{"lower-cased", "Bill-Service", "istio-demo", "", "bill-service.istio-demo.svc.cluster.local"},
		{"empty", "", "x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResolveHost(tt.host, tt.ns, tt.suffix); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHostMatches(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"a.example.com", "a.example.com", true},
		{"*", "anything.at.all", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "*.a.example.com", true},
		{"*.a.example.com", "*.example.com", false},
		{"a.example.com", "b.example.com", false},
	}
	for _, tt := range tests {
		if got := HostMatches(tt.pattern, tt.host); got != tt.want {
			t.Errorf("HostMatches(%q, %q): got %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func TestParseProtocol(t *testing.T) {
	tests := []struct {
		proto, name string
		want        Protocol
	}{
		{"HTTP", "", HTTP},
		{"http", "", HTTP},
		{"", "http-web", HTTP},
		{"", "grpc", GRPC},
		{"", "http2", HTTP2},
		{"TCP", "http", TCP},
		{"", "ssh", Unknown},
		{"HTTPS", "", HTTPS},
		{"TLS", "", TLS},
		{"", "redis", Redis},
		{"MONGO", "", Mongo},
	}
	for _, tt := range tests {
		if got := ParseProtocol(tt.proto, tt.name); got != tt.want {
			t.Errorf("ParseProtocol(%q, %q): got %q, want %q", tt.proto, tt.name, got, tt.want)
		}
	}
}

func TestMerge(t *testing.T) {
	a := &Service{Hostname: "a.ns.svc.cluster.local", Source: "first"}
	a2 := &Service{Hostname: "a.ns.svc.cluster.local", Source: "second"}
	b := &Service{Hostname: "b.ns.svc.cluster.local"}
	ep := func(addr string) *Endpoint {
		return &Endpoint{Service: "a.ns.svc.cluster.local", Address: addr, Port: 80}
	}
	s1 := NewSnapshot([]*Service{a}, map[string][]*Endpoint{a.Hostname: {ep("10.0.0.2")}})
	s2 := NewSnapshot([]*Service{b, a2}, map[string][]*Endpoint{a.Hostname: {ep("10.0.0.1")}, "orphan": {ep("10.0.0.3")}})
	m := Merge(s1, nil, s2)
	var hosts []string
	for _, s := range m.Services {
		hosts = append(hosts, s.Hostname)
	}
	if want := []string{"a.ns.svc.cluster.local", "b.ns.svc.cluster.local"}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got services %v, want %v", hosts, want)
	}
	if got := m.Service(a.Hostname).Source; got != "first" {
		t.Errorf("got service from %q, want the first snapshot's", got)
	}
	var addrs []string
	for _, e := range m.Endpoints[a.Hostname] {
		addrs = append(addrs, e.Address)
	}
	if want := []string{"10.0.0.1", "10.0.0.2"}; !reflect.DeepEqual(addrs, want) {
		t.Errorf("got endpoints %v, want %v (union, sorted)", addrs, want)
	}
	if _, ok := m.Endpoints["orphan"]; ok {
		t.Error("kept endpoints of a hostname with no service")
	}
	if got := m.Service("missing"); got != nil {
		t.Errorf("got %v for a missing host, want nil", got)
	}
}
