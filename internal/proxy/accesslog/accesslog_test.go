package accesslog

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

func entry() *Entry {
	return &Entry{
		Start:                   time.Date(2026, 11, 22, 5, 0, 0, 123e6, time.UTC),
		Duration:                12 * time.Millisecond,
		UpstreamDuration:        10 * time.Millisecond,
		Method:                  "GET",
		Path:                    "/hello",
		OriginalPath:            "/simple/hello",
		Authority:               "simple.zhongmingmao.io",
		UserAgent:               "curl/8.0",
		RequestID:               "b9a7c9e2-1",
		Protocol:                "HTTP/1.1",
		Status:                  200,
		Flags:                   "-",
		Details:                 "via_upstream",
		BytesSent:               12,
		UpstreamHost:            "10.1.0.5:80",
		UpstreamCluster:         "outbound|80||simple.default.svc.cluster.local",
		UpstreamLocalAddress:    "10.1.0.9:41234",
		DownstreamLocalAddress:  "10.1.0.9:80",
		DownstreamRemoteAddress: "10.1.0.7:55555",
		RouteName:               "default",
		RequestHeader: func(n string) (string, bool) {
			if n == "x-user" {
				return "jesse", true
			}
			return "", false
		},
	}
}

func TestTextFormat(t *testing.T) {
	tests := []struct {
		name   string
		format string
		entry  func() *Entry
		want   string
	}{
		{"istio default", IstioFormat, entry,
			`[2026-11-22T05:00:00.123Z] "GET /simple/hello HTTP/1.1" 200 - via_upstream - "-" 0 12 12 10 "-" "curl/8.0" "b9a7c9e2-1" "simple.zhongmingmao.io" "10.1.0.5:80" outbound|80||simple.default.svc.cluster.local 10.1.0.9:41234 10.1.0.9:80 10.1.0.7:55555 - default` + "\n"},
		{"fallback header when the first is absent", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", func() *Entry { e := entry(); e.OriginalPath = ""; return e }, "/hello"},
		{"custom request header", "%REQ(X-USER)% %REQ(X-MISSING)%", entry, "jesse -"},
		{"max length", "%REQ(USER-AGENT):4%", entry, "curl"},
		{"literal percent", "100%% %RESPONSE_CODE%", entry, "100% 200"},
		{"start time layout", "%START_TIME(%Y/%m/%d %H:%M:%S)%", entry, "2026/11/22 05:00:00"},
		{"address without port", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", entry, "10.1.0.7"},
		{"tcp entry", "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %PROTOCOL%", func() *Entry { return &Entry{UpstreamCluster: "redis", BytesReceived: 7} }, "redis 7 -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFormat(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(f.AppendText(nil, tt.entry())); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestFormatErrors(t *testing.T) {
	tests := []struct{ name, format, want string }{
		{"unknown command", "%NOPE%", `unknown command "NOPE"`},
		{"unclosed argument", "a %REQ(X", "missing ')'"},
		{"unterminated", "a %PROTOCOL", "unterminated"},
		{"bad max length", "%REQ(X):zero%", "max length"},
		{"empty header", "%REQ()%", "needs a header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := CompileFormat(tt.format); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestJSONFormat(t *testing.T) {
	s, _ := structpb.NewStruct(map[string]any{
		"code":     "%RESPONSE_CODE%",
		"path":     "%REQ(:PATH)%",
		"sni":      "%REQUESTED_SERVER_NAME%",
		"combined": "%REQ(:METHOD)% %RESPONSE_CODE%",
		"upstream": map[string]any{"host": "%UPSTREAM_HOST%"},
	})
	j, err := CompileJSON(s, false)
	if err != nil {
		t.Fatal(err)
	}
	out := j.AppendJSON(nil, entry())
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("got invalid JSON %s: %v", out, err)
	}
	want := map[string]any{"code": float64(200), "path": "/hello", "sni": nil, "combined": "GET 200",
		"upstream": map[string]any{"host": "10.1.0.5:80"}}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("got %s, want %s", gb, wb)
	}
	omit, _ := CompileJSON(s, true)
	if strings.Contains(string(omit.AppendJSON(nil, entry())), `"sni"`) {
		t.Errorf("got sni with omit_empty_values, want it left out")
	}
}

func fileLog(t *testing.T, fl *filev3.FileAccessLog) *accesslogv3.AccessLog {
	t.Helper()
	a, err := anypb.New(fl)
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}}
}

func TestFileLogger(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	js, _ := structpb.NewStruct(map[string]any{"code": "%RESPONSE_CODE%"})
	sinks := NewSinks(nil)
	logs, err := Compile([]*accesslogv3.AccessLog{
		fileLog(t, &filev3.FileAccessLog{Path: path}),
		fileLog(t, &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: js}}}}),
	}, "access_log", sinks)
	if err != nil {
		t.Fatal(err)
	}
	logs.Write(entry())
	sinks.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `[2026-11-22T05:00:00.123Z] "GET /simple/hello HTTP/1.1" 200`) || lines[1] != `{"code":200}` {
		t.Errorf("got lines %q, want the Istio text line and the JSON line", lines)
	}
}

func TestCompileRejects(t *testing.T) {
	bad := fileLog(t, &filev3.FileAccessLog{Path: "/dev/stdout", AccessLogFormat: &filev3.FileAccessLog_Format{Format: "%BOGUS%"}})
	noPath := fileLog(t, &filev3.FileAccessLog{})
	filtered := proto.Clone(fileLog(t, &filev3.FileAccessLog{Path: "/dev/stdout"})).(*accesslogv3.AccessLog)
	filtered.Filter = &accesslogv3.AccessLogFilter{}
	cel := proto.Clone(fileLog(t, &filev3.FileAccessLog{Path: "/dev/stdout"})).(*accesslogv3.AccessLog)
	celAny, _ := anypb.New(&celv3.ExpressionFilter{Expression: "request.headers['x'] == 'y'"})
	cel.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
		Name: "envoy.access_loggers.extension_filters.cel", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: celAny}}}}
	tests := []struct {
		name string
		log  *accesslogv3.AccessLog
		want string
	}{
		{"unknown command", bad, `hcm.access_log[0]: format: %BOGUS%: unknown command`},
		{"no path", noPath, "hcm.access_log[0].typed_config.path: must be set"},
		{"unsupported expression", cel, "hcm.access_log[0].filter.extension_filter.typed_config.expression: unsupported character '['"},
		{"filter", filtered, "hcm.access_log[0].filter: only extension_filter envoy.access_loggers.extension_filters.cel is supported"},
		{"other logger", &accesslogv3.AccessLog{ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/x.Y"}}}, "is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]*accesslogv3.AccessLog{tt.log}, "hcm.access_log", NewSinks(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestFullQueueDrops(t *testing.T) {
	pr, pw := io.Pipe()
	store := stats.NewStore()
	sinks := NewSinks(store)
	sinks.Stdout = pw // nobody reads yet: the writer blocks
	logs, err := Compile([]*accesslogv3.AccessLog{fileLog(t, &filev3.FileAccessLog{Path: "/dev/stdout"})}, "a", sinks)
	if err != nil {
		t.Fatal(err)
	}
	e := entry()
	for i := 0; i < QueueSize+2000; i++ {
		logs.Write(e)
	}
	if sinks.Dropped() == 0 {
		t.Errorf("got no drops with a blocked writer, want some")
	}
	go io.Copy(io.Discard, pr)
	sinks.Close()
	pw.Close()
	if got, dropped := store.CounterValue("access_log.written"), sinks.Dropped(); got+dropped != uint64(QueueSize+2000) {
		t.Errorf("got written %d + dropped %d, want %d", got, dropped, QueueSize+2000)
	}
}

func FuzzCompileFormat(f *testing.F) {
	f.Add(IstioFormat)
	f.Add("%REQ(A?B):3%")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := CompileFormat(s)
		if err != nil {
			return
		}
		fm.AppendText(nil, entry())
		fm.AppendText(nil, &Entry{})
	})
}

func TestWriteAfterCloseIsDropped(t *testing.T) {
	var buf strings.Builder
	sinks := NewSinks(nil)
	sinks.Stdout = &lockedWriter{w: &buf}
	logs, err := Compile([]*accesslogv3.AccessLog{fileLog(t, &filev3.FileAccessLog{Path: "/dev/stdout"})}, "a", sinks)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2000; i++ {
			logs.Write(entry())
		}
	}()
	sinks.Close() // racing the writer must not panic
	<-done
	before := sinks.Dropped()
	logs.Write(entry())
	if got := sinks.Dropped(); got != before+1 {
		t.Errorf("got dropped %d after a write past Close, want %d", got, before+1)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
