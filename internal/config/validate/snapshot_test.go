package validate

import (
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

func snapshotOf(t *testing.T, yaml string) (*config.Snapshot, Hosts) {
	t.Helper()
	pr, err := config.Parse([]byte(yaml), "in.yaml")
	if err != nil || len(pr.Errors) > 0 {
		t.Fatalf("Parse: %v %v", err, pr.Errors)
	}
	snap := config.NewSnapshot(pr.Resources)
	return snap, HostsFromConfig(snap, pr.Kube, "")
}

const billDR = `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: dest-bill-service, namespace: istio-demo}
spec:
  host: bill-service
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: bill-service, namespace: istio-demo}
spec:
  ports: [{port: 9999, name: http}]
`

func billVS(subset2, host2 string) string {
	return `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: vs-bill-service, namespace: istio-demo}
spec:
  hosts: [bill-service]
  http:
  - route:
    - destination: {host: bill-service, subset: v1}
      weight: 90
    - destination: {host: ` + host2 + `, subset: ` + subset2 + `}
      weight: 10
`
}

func TestSnapshotWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "field: message fragment"; empty means no warnings
	}{
		{"consistent", billDR + "---\n" + billVS("v2", "bill-service"), nil},
		{"fqdn destination", billDR + "---\n" + billVS("v2", "bill-service.istio-demo.svc.cluster.local"), nil},
		{"subset missing from rule", billDR + "---\n" + billVS("v3", "bill-service"),
			[]string{`spec.http[0].route[1].destination.subset: subset "v3" of host "bill-service.istio-demo.svc.cluster.local" is not defined by DestinationRule istio-demo/dest-bill-service (it defines "v1", "v2")`}},
		{"no rule for host", strings.SplitN(billDR, "---\n", 2)[1] + "---\n" + billVS("v2", "bill-service"),
			[]string{`spec.http[0].route[0].destination.subset: subset "v1" of host "bill-service.istio-demo.svc.cluster.local" is not defined: no DestinationRule`,
				`spec.http[0].route[1].destination.subset: subset "v2"`}},
		{"destination matches no service", billDR + "---\n" + billVS("v2", "ghost"),
			[]string{`spec.http[0].route[1].destination.host: destination host "ghost.istio-demo.svc.cluster.local" matches no known service`,
				`spec.http[0].route[1].destination.subset: subset "v2" of host "ghost.istio-demo.svc.cluster.local" is not defined: no DestinationRule`}},
		{"rule host matches no service", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec: {host: nothing.example.com}
`, []string{`spec.host: DestinationRule host "nothing.example.com" matches no known service`}},
		{"service entry hosts count", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: ["*.googleapis.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: g}
spec:
  hosts: [storage.googleapis.com]
  tls:
  - match: [{sniHosts: [storage.googleapis.com]}]
    route: [{destination: {host: storage.googleapis.com}}]
`, nil},
		{"missing gateway", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.example.com], ports: [{number: 80, name: http}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [a.example.com]
  gateways: [istio-system/gw, mesh, nogw]
  http: [{route: [{destination: {host: a.example.com}}]}]
`, []string{`spec.gateways[2]: gateway default/nogw is not defined by any Gateway`}},
		{"delegation", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.example.com], ports: [{number: 80, name: http}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [a.example.com]
  http:
  - delegate: {name: child}
  - delegate: {name: missing, namespace: other}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http: [{route: [{destination: {host: a.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orphan}
spec:
  http: [{route: [{destination: {host: a.example.com}}]}]
`, []string{`spec.http[1].delegate: delegate VirtualService other/missing does not exist`,
			`spec.hosts: no hosts and no VirtualService delegates to it`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, hosts := snapshotOf(t, tc.yaml)
			res := Snapshot(snap, hosts)
			if len(res.Errors) != 0 {
				t.Errorf("got errors %v, want none", res.Errors)
			}
			if len(res.Warnings) != len(tc.want) {
				t.Errorf("got %d warnings %v, want %d", len(res.Warnings), res.Warnings, len(tc.want))
			}
			for _, w := range tc.want {
				found := false
				for _, is := range res.Warnings {
					if strings.Contains(is.Field+": "+is.Message, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no warning like %q in %v", w, res.Warnings)
				}
			}
		})
	}
}

func TestSnapshotNilHostsSkipsServiceCheck(t *testing.T) {
	snap, _ := snapshotOf(t, billVS("v2", "ghost"))
	res := Snapshot(snap, nil)
	for _, w := range res.Warnings {
		if strings.Contains(w.Message, "matches no known service") {
			t.Errorf("got %v with nil hosts, want no service checks", w)
		}
	}
}

func TestHosts(t *testing.T) {
	h := NewHosts("reviews.default.svc.cluster.local", "*.googleapis.com")
	tests := []struct {
		host string
		want bool
	}{
		{"reviews.default.svc.cluster.local", true},
		{"REVIEWS.default.svc.cluster.local", true},
		{"ratings.default.svc.cluster.local", false},
		{"storage.googleapis.com", true},
		{"googleapis.com", false},
		{"*.default.svc.cluster.local", true},
		{"*.example.com", false},
	}
	for _, tc := range tests {
		if got := h.Has(tc.host); got != tc.want {
			t.Errorf("Has(%q): got %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestFQDN(t *testing.T) {
	tests := []struct{ host, ns, suffix, want string }{
		{"reviews", "default", "", "reviews.default.svc.cluster.local"},
		{"reviews", "prod", "corp.local", "reviews.prod.svc.corp.local"},
		{"reviews.prod", "default", "", "reviews.prod"},
		{"*.example.com", "default", "", "*.example.com"},
		{"10.0.0.1", "default", "", "10.0.0.1"},
	}
	for _, tc := range tests {
		if got := FQDN(tc.host, tc.ns, tc.suffix); got != tc.want {
			t.Errorf("FQDN(%q, %q, %q): got %q, want %q", tc.host, tc.ns, tc.suffix, got, tc.want)
		}
	}
}
