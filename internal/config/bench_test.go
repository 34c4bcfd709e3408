package config

import (
	"fmt"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func benchYAML(n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-%d, namespace: ns}
spec:
  hosts: [svc-%d]
  http:
  - match:
    - headers: {user: {exact: jesse}}
      uri: {prefix: /api}
    route:
    - destination: {host: svc-%d, subset: v2}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure"}
  - route:
    - destination: {host: svc-%d, subset: v1}
      weight: 90
    - destination: {host: svc-%d, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr-%d, namespace: ns}
spec:
  host: svc-%d
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, i, i, i, i, i, i, i)...)
	}
	return b
}

// BenchmarkParse measures YAML -> validated-shape istio.io/api objects for a
// VirtualService + DestinationRule pair; b.N pairs per op are reported per pair.
func BenchmarkParse(b *testing.B) {
	data := benchYAML(100)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		res, err := Parse(data, "bench.yaml")
		if err != nil || len(res.Errors) > 0 || len(res.Resources) != 200 {
			b.Fatalf("got %v %v %d resources", err, res.Errors, len(res.Resources))
		}
	}
}

// BenchmarkStoreSet measures one file change in a store holding 1,000
// sources of 2 resources each (snapshot rebuild included).
func BenchmarkStoreSet(b *testing.B) {
	s := NewStore()
	var changes []Change
	for i := 0; i < 1000; i++ {
		changes = append(changes, Change{Source: fmt.Sprintf("file:%04d", i), Resources: []*Resource{
			{Kind: KindVirtualService, Meta: Meta{Name: fmt.Sprintf("vs-%d", i), Namespace: "ns"}, Spec: &networking.VirtualService{}},
			{Kind: KindDestinationRule, Meta: Meta{Name: fmt.Sprintf("dr-%d", i), Namespace: "ns"}, Spec: &networking.DestinationRule{}},
		}})
	}
	s.Apply(changes)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := changes[i%len(changes)]
		s.Set(c.Source, c.Resources)
	}
}
