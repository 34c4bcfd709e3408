package httpconn

import "strings"

// Flags are Envoy's response flags for a request or connection.
type Flags uint32

// The response flags trellis-proxy sets, in the order Envoy renders them.
const (
	FlagUH  Flags = 1 << iota // no healthy upstream
	FlagUT                    // upstream request timeout
	FlagUR                    // upstream remote reset
	FlagUF                    // upstream connection failure
	FlagUC                    // upstream connection termination
	FlagUO                    // upstream overflow (circuit breaker)
	FlagNR                    // no route
	FlagDI                    // delay injected
	FlagFI                    // fault injected
	FlagDC                    // downstream connection termination
	FlagURX                   // upstream retry limit exceeded
	FlagSI                    // stream idle timeout
	FlagDPE                   // downstream protocol error
	FlagNC                    // no cluster found
)

var flagNames = [...]string{"UH", "UT", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "SI", "DPE", "NC"}

// String renders the flags as Envoy's access log does: "-" when none,
// otherwise the short codes joined by commas.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}
