package validate

import (
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

// BenchmarkResource measures validating the bill-service VirtualService
// and DestinationRule.
func BenchmarkResource(b *testing.B) {
	pr, err := config.Parse([]byte(billDR+"---\n"+billVS("v2", "bill-service")), "bench.yaml")
	if err != nil || len(pr.Errors) > 0 {
		b.Fatal(err, pr.Errors)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if res := Resources(pr.Resources); !res.OK() {
			b.Fatal(res.Errors)
		}
	}
}
