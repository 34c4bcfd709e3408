package iptables

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// istioDefault is the nat table Istio's default injection produces (see
// docs: ISTIO-FACTS.md); Trellis must produce it byte for byte.
const istioDefault = `*nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
`

func TestRulesMatchIstioDefault(t *testing.T) {
	rs, err := Rules(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Restore(); got != istioDefault {
		t.Errorf("got\n%s\nwant\n%s", got, istioDefault)
	}
}

func TestRulesGolden(t *testing.T) {
	tests := []struct {
		name string
		opts func(o *Options)
	}{
		{"default", func(o *Options) {}},
		{"seed003-install-values", func(o *Options) {
			// proxy.includeIPRanges / excludeIPRanges / includeInboundPorts.
			o.IncludeOutboundIPRanges = []string{"10.96.0.0/12,192.168.0.0/16"}
			o.ExcludeOutboundIPRanges = []string{"10.96.0.10/32"}
			o.InboundPorts = []string{"80", "8080"}
		}},
		{"exclude-inbound-and-outbound-ports", func(o *Options) {
			o.ExcludeInboundPorts = []string{"15090,15021,15020", "22"}
			o.ExcludeOutboundPorts = []string{"5432", "3306"}
		}},
		{"include-outbound-ports-only", func(o *Options) {
			o.IncludeOutboundIPRanges = nil
			o.IncludeOutboundPorts = []string{"9999"}
		}},
		{"no-inbound-capture", func(o *Options) { o.InboundPorts = nil }},
		{"custom-ports-and-ids", func(o *Options) {
			o.ProxyPort, o.InboundCapturePort = 25001, 25006
			o.ProxyUID, o.ProxyGID = "1337,1338", "1337"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.opts(&o)
			rs, err := Rules(o)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "rules", tt.name+".golden"), rs.Restore())
		})
	}
}

func TestRulesRejectBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts func(o *Options)
		want string
	}{
		{"port out of range", func(o *Options) { o.ExcludeInboundPorts = []string{"15090,70000"} }, "exclude-inbound-ports[1]: got \"70000\""},
		{"not a port", func(o *Options) { o.IncludeOutboundPorts = []string{"http"} }, "include-outbound-ports[0]: got \"http\""},
		{"wildcard mixed", func(o *Options) { o.InboundPorts = []string{"*", "80"} }, "include-inbound-ports: \"*\" must be the only value"},
		{"wildcard exclude", func(o *Options) { o.ExcludeOutboundIPRanges = []string{"*"} }, "exclude-outbound-ip-ranges[0]: \"*\" is not allowed"},
		{"bad cidr", func(o *Options) { o.IncludeOutboundIPRanges = []string{"10.0.0.0/33"} }, "include-outbound-ip-ranges[0]: got \"10.0.0.0/33\""},
		{"ipv6", func(o *Options) { o.ExcludeOutboundIPRanges = []string{"fd00::/8"} }, "IPv6 ranges are not supported"},
		{"uid", func(o *Options) { o.ProxyUID = "istio-proxy" }, "proxy-uid: \"istio-proxy\" is not a numeric id"},
		{"proxy port", func(o *Options) { o.ProxyPort = -1 }, "proxy-port: got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.opts(&o)
			_, err := Rules(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRulesNormalizeCIDRs(t *testing.T) {
	o := DefaultOptions()
	o.ExcludeOutboundIPRanges = []string{" 10.1.2.3 , 10.9.8.7/8"}
	rs, err := Rules(o)
	if err != nil {
		t.Fatal(err)
	}
	out := rs.Restore()
	for _, want := range []string{"-A ISTIO_OUTPUT -d 10.1.2.3/32 -j RETURN", "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("got\n%s\nwant a line %q", out, want)
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}
