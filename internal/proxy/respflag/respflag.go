package respflag

import "strings"

// Flags are Envoy's response flags for a request or connection. The zero
// value means none ("-").
type Flags uint32

// The response flags trellis-proxy sets, in the order Envoy renders them.
const (
	UH   Flags = 1 << iota // no healthy upstream
	UT                     // upstream request timeout
	UR                     // upstream remote reset
	UF                     // upstream connection failure
	UC                     // upstream connection termination
	UO                     // upstream overflow (circuit breaker)
	NR                     // no route
	DI                     // delay injected
	FI                     // fault injected
	DC                     // downstream connection termination
	URX                    // upstream retry limit exceeded
	SI                     // stream idle timeout
	DPE                    // downstream protocol error
	NC                     // no cluster found
	RBAC                   // denied by the RBAC filter
)

var names = [...]string{"UH", "UT", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "SI", "DPE", "NC", "RBAC"}

// String renders the flags as Envoy's access log does: "-" when none,
// otherwise the short codes joined by commas.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var parts []string
	for i, n := range names {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}
