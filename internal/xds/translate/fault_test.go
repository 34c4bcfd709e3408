package translate

import "testing"

func TestGRPCStatusCode(t *testing.T) {
	for in, want := range map[string]uint32{
		"OK": 0, "CANCELLED": 1, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16,
		"14": 14, "0": 0,
		"17": 2, "unavailable": 2, "": 2,
	} {
		if got := grpcStatusCode(in); got != want {
			t.Errorf("%q: got %d, want %d", in, got, want)
		}
	}
}
