package serviceentry

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

func parse(t *testing.T, yaml string) *config.Snapshot {
	t.Helper()
	res, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		t.Fatal(e)
	}
	return config.NewSnapshot(res.Resources)
}

const input = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-service, namespace: istio-demo}
spec:
  hosts: [bill-service]
  addresses: [10.96.0.20/32]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9999, name: http, protocol: HTTP, targetPort: 80}
  - {number: 9000, name: grpc-admin}
  workloadSelector:
    labels: {service: bill-service}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bill-v1, namespace: istio-demo}
spec:
  address: 10.0.1.1
  labels: {service: bill-service, version: v1}
  locality: us-east/a
  serviceAccount: bill
  ports: {grpc-admin: 9100}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: bill-vm, namespace: istio-demo}
spec:
  metadata: {labels: {service: bill-service}}
  template: {address: 10.0.1.50, labels: {version: vm}, serviceAccount: bill-vm}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: no-address, namespace: istio-demo}
spec:
  metadata: {labels: {service: bill-service}}
  template: {labels: {version: vm2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: elsewhere}
spec:
  address: 10.0.9.9
  labels: {service: bill-service}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.internal, dup.internal]
  addresses: [192.168.0.7/24]
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  endpoints:
  - {address: 192.168.0.10, weight: 3}
  - {address: 192.168.0.11, ports: {tcp-pg: 6432}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: zz-dup, namespace: default}
spec:
  hosts: [dup.internal]
  resolution: NONE
  ports: [{number: 1, name: tcp, protocol: TCP}]
`

func TestBuild(t *testing.T) {
	snap := Build(parse(t, input), "")
	var hosts []string
	for _, s := range snap.Services {
		hosts = append(hosts, s.Hostname)
	}
	if want := []string{"bill-service.istio-demo.svc.cluster.local", "dup.internal", "httpbin.org", "legacy.internal"}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got hosts %v, want %v", hosts, want)
	}
	bill := snap.Service("bill-service.istio-demo.svc.cluster.local")
	if bill.Name != "bill-service" || bill.Namespace != "istio-demo" || bill.MeshExternal || bill.Resolution != registry.ResolutionStatic {
		t.Errorf("bill-service: got %+v", bill)
	}
	if want := []string{"10.96.0.20"}; !reflect.DeepEqual(bill.Addresses, want) {
		t.Errorf("addresses: got %v, want %v", bill.Addresses, want)
	}
	if got := bill.Port(9000).Protocol; got != registry.GRPC {
		t.Errorf("port 9000 protocol from name: got %q, want GRPC", got)
	}
	var got []string
	for _, e := range snap.Endpoints[bill.Hostname] {
		got = append(got, e.Address+":"+u(e.Port)+"/"+u(e.ServicePort)+" "+e.Workload+" "+e.Locality+" "+e.ServiceAccount)
	}
	want := []string{"10.0.1.1:80/9999 bill-v1 us-east/a bill", "10.0.1.1:9100/9000 bill-v1 us-east/a bill",
		"10.0.1.50:80/9999 bill-vm  bill-vm", "10.0.1.50:9000/9000 bill-vm  bill-vm"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bill endpoints: got %v, want %v (workload selector only in the same namespace, port map by name)", got, want)
	}
	httpbin := snap.Service("httpbin.org")
	if !httpbin.MeshExternal || httpbin.Resolution != registry.ResolutionDNS {
		t.Errorf("httpbin: got %+v", httpbin)
	}
	if eps := snap.Endpoints["httpbin.org"]; len(eps) != 1 || eps[0].Address != "httpbin.org" || eps[0].Port != 443 {
		t.Errorf("DNS service with no endpoints should resolve its own host: got %+v", eps)
	}
	got = nil
	for _, e := range snap.Endpoints["legacy.internal"] {
		got = append(got, e.Address+":"+u(e.Port)+" w"+u(e.Weight))
	}
	if want := []string{"192.168.0.10:5432 w3", "192.168.0.11:6432 w0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("legacy endpoints: got %v, want %v", got, want)
	}
	if got, want := snap.Service("legacy.internal").CIDRs, []string{"192.168.0.0/24"}; !reflect.DeepEqual(got, want) || len(snap.Service("legacy.internal").Addresses) != 0 {
		t.Errorf("legacy CIDRs: got %v (addresses %v), want %v and no VIP", got, snap.Service("legacy.internal").Addresses, want)
	}
	if got := snap.Service("dup.internal").Source; got != "ServiceEntry/default/legacy" {
		t.Errorf("duplicate host: got it from %s, want the first ServiceEntry", got)
	}
}

func u(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
