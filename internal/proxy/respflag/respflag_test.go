package respflag

import "testing"

func TestString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "-"},
		{UH, "UH"},
		{UF | URX, "UF,URX"},
		{NC | UH | DI, "UH,DI,NC"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
