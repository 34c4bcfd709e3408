package tagexpr

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want   string
		perRequest bool
	}{
		{"'foo'", "'foo'", false},
		{`"foo"`, "'foo'", false},
		{"request.headers['X-User']", "request.headers['x-user']", true},
		{`request.headers["x-y"]`, "request.headers['x-y']", true},
		{"request.host", "request.host", true},
		{"request.method", "request.method", true},
		{"request.path", "request.path", true},
		{"request.url_path", "request.url_path", true},
		{"request.protocol", "request.protocol", true},
		{"upstream_peer.app", "upstream_peer.app", false},
		{"downstream_peer.namespace", "downstream_peer.namespace", false},
		{" request.headers['x'] | 'none' ", "request.headers['x'] | 'none'", true},
		{"upstream_peer.version|downstream_peer.version|'v0'", "upstream_peer.version | downstream_peer.version | 'v0'", false},
	} {
		e, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := e.String(); got != tc.want {
			t.Errorf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if got := e.PerRequest(); got != tc.perRequest {
			t.Errorf("Parse(%q).PerRequest() = %v, want %v", tc.in, got, tc.perRequest)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"request.headers", "needs a header name"},
		{"request.headers['x'", "expected ]"},
		{"request.headers['']", "is not a header name"},
		{"'a", "unterminated"},
		{"request.scheme", "request.scheme is not supported"},
		{"xds.cluster_name", "xds.cluster_name is not supported"},
		{"upstream_peer.labels", `has no field "labels"`},
		{"request.host == 'a'", "unexpected"},
		{"request.host || 'a'", "||"},
		{"request.host |", "missing a term"},
		{"'a' | request.host", "put it last"},
		{"has(request.host)", "has is not supported"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"'a'", "request.headers['x'] | 'b'", "upstream_peer.app", "a | b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			return
		}
		// The canonical form parses to the same expression.
		e2, err := Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Fatalf("Parse(%q) = %s, which reparses as %v, %v", s, e, e2, err)
		}
	})
}

func TestLabelName(t *testing.T) {
	for s, want := range map[string]bool{"user": true, "_x9": true, "Team_2": true, "": false, "9lives": false, "a-b": false, "a.b": false} {
		if got := LabelName(s); got != want {
			t.Errorf("LabelName(%q) = %v, want %v", s, got, want)
		}
	}
}
