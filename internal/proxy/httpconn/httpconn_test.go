package httpconn

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "-"},
		{FlagFI, "FI"},
		{FlagUT | FlagURX, "UT,URX"},
		{FlagURX | FlagUF, "UF,URX"},
		{FlagDI | FlagFI, "DI,FI"},
		{FlagNC, "NC"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestRequestIDIsUUIDv4(t *testing.T) {
	n := uint64(0)
	e := &exchange{m: &Manager{Rand: func() uint64 { n += 0x9e3779b97f4a7c15; return n }}}
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := string(e.newRequestID())
		if !re.MatchString(id) {
			t.Fatalf("got %q, want a UUID v4", id)
		}
		seen[id] = true
	}
	if len(seen) != 100 {
		t.Errorf("got %d distinct ids, want 100", len(seen))
	}
}

type tables map[string]*RouteTable

func (t tables) Table(name string) *RouteTable {
	if t[name] == nil {
		t[name] = &RouteTable{Name: name}
	}
	return t[name]
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{name: "no routes", yaml: `{stat_prefix: x}`, want: "set rds or route_config"},
		{name: "http3", yaml: `{codec_type: HTTP3, rds: {route_config_name: "80"}}`, want: "codec_type: HTTP3 is not supported"},
		{name: "unknown filter", yaml: `{rds: {route_config_name: "80"}, http_filters: [{name: envoy.filters.http.lua}, {name: envoy.filters.http.router}]}`, want: `http_filters[0].name: filter "envoy.filters.http.lua" is not supported`},
		{name: "router not last", yaml: `{rds: {route_config_name: "80"}, http_filters: [{name: envoy.filters.http.router}, {name: envoy.filters.http.fault}]}`, want: `http_filters[1]: "envoy.filters.http.fault" follows the terminal filter "envoy.filters.http.router"`},
		{name: "optional unknown filter is skipped", yaml: `{rds: {route_config_name: "80"}, http_filters: [{name: istio.stats, is_optional: true}, {name: envoy.filters.http.router}]}`},
		{name: "access log without logger", yaml: `{rds: {route_config_name: "80"}, access_log: [{name: envoy.access_loggers.file}]}`, want: "access_log: no access logger is available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, err := yaml.YAMLToJSON([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var h hcmv3.HttpConnectionManager
			if err := protojson.Unmarshal(js, &h); err != nil {
				t.Fatal(err)
			}
			_, err = Compile(&h, tables{}, nil, "hcm")
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSplitAbsolute(t *testing.T) {
	tests := []struct{ in, authority, path string }{
		{"http://a.example/x?y=1", "a.example", "/x?y=1"},
		{"http://a.example:8080", "a.example:8080", "/"},
		{"HTTP://a.example?q", "a.example", "/?q"},
	}
	for _, tt := range tests {
		a, p, ok := splitAbsolute([]byte(tt.in))
		if !ok || string(a) != tt.authority || string(p) != tt.path {
			t.Errorf("%s: got %q %q %v, want %q %q", tt.in, a, p, ok, tt.authority, tt.path)
		}
	}
	if _, _, ok := splitAbsolute([]byte("ftp://x/")); ok {
		t.Error("got ok for ftp://, want not absolute http")
	}
}

func TestHTTPToGRPC(t *testing.T) {
	for status, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 503: 14, 504: 14, 500: 2} {
		if got := httpToGRPC(status); got != want {
			t.Errorf("%d: got %d, want %d", status, got, want)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in    string
		merge bool
		want  string
	}{
		{"/a/b", false, "/a/b"},
		{"/a/./b", false, "/a/b"},
		{"/a/../b", false, "/b"},
		{"/a/b/..", false, "/a/"},
		{"/../../x", false, "/x"},
		{"/a/b/.?q=/../", false, "/a/b/?q=/../"},
		{"/a//b", false, "/a//b"},
		{"/a//b///c", true, "/a/b/c"},
		{"/a.b/..c/x.", false, "/a.b/..c/x."},
		{"/", false, "/"},
		{"", false, ""},
	}
	if got := string(normalizePath(nil, []byte("/a/../b//c"), false, true)); got != "/a/../b/c" {
		t.Errorf("merge only: got %s, want /a/../b/c", got)
	}
	for _, tt := range tests {
		if got := string(normalizePath(nil, []byte(tt.in), true, tt.merge)); got != tt.want {
			t.Errorf("%s (merge %v): got %s, want %s", tt.in, tt.merge, got, tt.want)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/a/./b/../c", "//x//y?q=/../", "/..", "/a/b/.", "/%2e%2e/"} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, p []byte, merge bool) {
		if len(p) == 0 || p[0] != '/' {
			return
		}
		got := normalizePath(nil, p, true, merge)
		again := normalizePath(nil, got, true, merge)
		if string(again) != string(got) {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, got, again)
		}
		path := got
		if i := bytes.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if len(path) == 0 || path[0] != '/' {
			t.Fatalf("%q -> %q: lost the leading slash", p, got)
		}
		for _, seg := range bytes.Split(path[1:], []byte("/")) {
			if string(seg) == "." || string(seg) == ".." {
				t.Fatalf("%q -> %q: dot segment left", p, got)
			}
		}
	})
}
