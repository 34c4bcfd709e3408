package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
)

// defaultFormat is Envoy's default access log format.
const defaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// entry is what one access log line is rendered from.
type entry struct {
	http *httpconn.Record
	tcp  *tcpproxy.Record
}

type segment struct {
	lit string
	op  string
	arg string
	alt string
	max int
}

type format struct {
	segs []segment
	json []jsonField
}

type jsonField struct {
	key string
	f   *format
}

func parseFormat(s string) (*format, error) {
	f := &format{}
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			f.segs = append(f.segs, segment{lit: s})
			break
		}
		if i > 0 {
			f.segs = append(f.segs, segment{lit: s[:i]})
		}
		s = s[i+1:]
		j := strings.IndexByte(s, '%')
		if j < 0 {
			return nil, fmt.Errorf("unterminated %% command in format")
		}
		cmd := s[:j]
		s = s[j+1:]
		if cmd == "" {
			f.segs = append(f.segs, segment{lit: "%"})
			continue
		}
		seg := segment{op: cmd}
		if k := strings.IndexByte(cmd, '('); k >= 0 {
			end := strings.LastIndexByte(cmd, ')')
			if end < k {
				return nil, fmt.Errorf("command %q: missing )", cmd)
			}
			seg.op, seg.arg = cmd[:k], strings.ToLower(cmd[k+1:end])
			if rest := cmd[end+1:]; strings.HasPrefix(rest, ":") {
				n, err := strconv.Atoi(rest[1:])
				if err != nil {
					return nil, fmt.Errorf("command %q: bad length", cmd)
				}
				seg.max = n
			}
			if q := strings.IndexByte(seg.arg, '?'); q >= 0 {
				seg.arg, seg.alt = seg.arg[:q], seg.arg[q+1:]
			}
		}
		f.segs = append(f.segs, seg)
	}
	return f, nil
}

func (f *format) render(b *bytes.Buffer, e *entry) {
	if f.json != nil {
		m := make(map[string]string, len(f.json))
		keys := make([]string, 0, len(f.json))
		for _, jf := range f.json {
			var vb bytes.Buffer
			jf.f.render(&vb, e)
			m[jf.key] = vb.String()
			keys = append(keys, jf.key)
		}
		sort.Strings(keys)
		out, _ := json.Marshal(m)
		b.Write(out)
		b.WriteByte('\n')
		return
	}
	for _, s := range f.segs {
		if s.op == "" {
			b.WriteString(s.lit)
			continue
		}
		v := value(&s, e)
		if s.max > 0 && len(v) > s.max {
			v = v[:s.max]
		}
		if v == "" {
			v = "-"
		}
		b.WriteString(v)
	}
}

func addr(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func value(s *segment, e *entry) string {
	if t := e.tcp; t != nil {
		switch s.op {
		case "START_TIME":
			return t.Start.UTC().Format("2006-01-02T15:04:05.000Z")
		case "RESPONSE_FLAGS":
			return t.Flags.String()
		case "BYTES_RECEIVED":
			return strconv.FormatInt(t.BytesReceived, 10)
		case "BYTES_SENT":
			return strconv.FormatInt(t.BytesSent, 10)
		case "DURATION":
			return strconv.FormatInt(int64(t.Duration/time.Millisecond), 10)
		case "UPSTREAM_HOST":
			if t.Host != nil {
				return t.Host.Address
			}
		case "UPSTREAM_CLUSTER":
			return t.ClusterName
		case "DOWNSTREAM_REMOTE_ADDRESS":
			return addr(t.Downstream)
		case "DOWNSTREAM_LOCAL_ADDRESS":
			return addr(t.Local)
		case "PROTOCOL", "RESPONSE_CODE":
			return ""
		}
		return ""
	}
	r := e.http
	switch s.op {
	case "START_TIME":
		return r.Start.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ":
		v := reqHeader(r, s.arg)
		if v == "" && s.alt != "" {
			v = reqHeader(r, s.alt)
		}
		return v
	case "RESP":
		if s.arg == "x-envoy-upstream-service-time" && r.Host != nil {
			return strconv.FormatInt(int64(r.UpstreamDuration/time.Millisecond), 10)
		}
		return ""
	case "PROTOCOL":
		return r.Protocol
	case "RESPONSE_CODE":
		return strconv.Itoa(r.Status)
	case "RESPONSE_FLAGS":
		return r.Flags.String()
	case "GRPC_STATUS", "GRPC_STATUS_NUMBER":
		if r.GRPCStatus >= 0 {
			return strconv.Itoa(r.GRPCStatus)
		}
	case "BYTES_RECEIVED":
		return strconv.FormatInt(r.BytesReceived, 10)
	case "BYTES_SENT":
		return strconv.FormatInt(r.BytesSent, 10)
	case "DURATION":
		return strconv.FormatInt(int64(r.Duration/time.Millisecond), 10)
	case "UPSTREAM_HOST":
		if r.Host != nil {
			return r.Host.Address
		}
	case "UPSTREAM_CLUSTER":
		return r.ClusterName
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return addr(r.Downstream)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return addr(r.Local)
	case "ROUTE_NAME":
		return r.RouteName
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		return strconv.Itoa(r.Attempts)
	}
	return ""
}

func reqHeader(r *httpconn.Record, name string) string {
	switch name {
	case ":method":
		return string(r.Method)
	case ":path":
		return string(r.Path)
	case ":authority", "host":
		return string(r.Authority)
	}
	v, _ := r.RequestHeaders.Get(name)
	return string(v)
}

// logSink is one access log destination shared by every listener that
// names the same path.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

var (
	sinksMu sync.Mutex
	sinks   = map[string]*logSink{}
)

func sinkFor(path string, stderr io.Writer) (*logSink, error) {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	if s := sinks[path]; s != nil {
		return s, nil
	}
	var w io.Writer
	switch path {
	case "/dev/stdout":
		w = os.Stdout
	case "/dev/stderr":
		w = stderr
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		w = f
	}
	s := &logSink{w: w}
	sinks[path] = s
	return s, nil
}

// accessLogger writes one access log.
type accessLogger struct {
	sink *logSink
	f    *format
	pool sync.Pool
}

func (a *accessLogger) write(e *entry) {
	b, _ := a.pool.Get().(*bytes.Buffer)
	if b == nil {
		b = new(bytes.Buffer)
	}
	b.Reset()
	a.f.render(b, e)
	a.sink.mu.Lock()
	a.sink.w.Write(b.Bytes())
	a.sink.mu.Unlock()
	a.pool.Put(b)
}

// loggers fans a record out to several access logs.
type loggers []*accessLogger

func (l loggers) Request(r *httpconn.Record) {
	e := entry{http: r}
	for _, a := range l {
		a.write(&e)
	}
}

func (l loggers) Connection(r *tcpproxy.Record) {
	e := entry{tcp: r}
	for _, a := range l {
		a.write(&e)
	}
}

func compileLoggers(logs []*accesslogv3.AccessLog, stderr io.Writer, path string) (loggers, error) {
	var out loggers
	for i, l := range logs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if l.GetFilter() != nil {
			return nil, fmt.Errorf("%s.filter: access log filters are not supported", p)
		}
		var dest, text string
		var jsonFmt map[string]any
		switch l.GetName() {
		case "envoy.access_loggers.file", "envoy.file_access_log":
			var fl filev3.FileAccessLog
			if err := l.GetTypedConfig().UnmarshalTo(&fl); err != nil {
				return nil, fmt.Errorf("%s.typed_config: %w", p, err)
			}
			dest = fl.GetPath()
			text = fl.GetFormat()
			if lf := fl.GetLogFormat(); lf != nil {
				text = lf.GetTextFormat()
				if s := lf.GetTextFormatSource(); s != nil {
					text = s.GetInlineString()
				}
				if js := lf.GetJsonFormat(); js != nil {
					jsonFmt = js.AsMap()
				}
			}
			if js := fl.GetJsonFormat(); js != nil {
				jsonFmt = js.AsMap()
			}
		case "envoy.access_loggers.stdout", "envoy.access_loggers.stderr":
			var sl streamv3.StdoutAccessLog
			dest = "/dev/stdout"
			if l.GetName() == "envoy.access_loggers.stderr" {
				dest = "/dev/stderr"
			}
			if err := l.GetTypedConfig().UnmarshalTo(&sl); err == nil {
				if lf := sl.GetLogFormat(); lf != nil {
					text = lf.GetTextFormat()
					if s := lf.GetTextFormatSource(); s != nil {
						text = s.GetInlineString()
					}
					if js := lf.GetJsonFormat(); js != nil {
						jsonFmt = js.AsMap()
					}
				}
			}
		default:
			return nil, fmt.Errorf("%s.name: access logger %q is not supported (use envoy.access_loggers.file)", p, l.GetName())
		}
		if dest == "" {
			return nil, fmt.Errorf("%s.typed_config.path: must not be empty", p)
		}
		if text == "" {
			text = defaultFormat
		}
		f, err := parseFormat(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if jsonFmt != nil {
			f = &format{}
			for k, v := range jsonFmt {
				sv, ok := v.(string)
				if !ok {
					return nil, fmt.Errorf("%s.json_format[%q]: only string values are supported", p, k)
				}
				jf, err := parseFormat(sv)
				if err != nil {
					return nil, fmt.Errorf("%s.json_format[%q]: %w", p, k, err)
				}
				f.json = append(f.json, jsonField{key: k, f: jf})
			}
			sort.Slice(f.json, func(i, j int) bool { return f.json[i].key < f.json[j].key })
		}
		s, err := sinkFor(dest, stderr)
		if err != nil {
			return nil, fmt.Errorf("%s.typed_config.path: %w", p, err)
		}
		out = append(out, &accessLogger{sink: s, f: f})
	}
	return out, nil
}

func accessLogs(stderr io.Writer) httpconn.AccessLogCompiler {
	return func(logs []*accesslogv3.AccessLog, path string) (httpconn.Observer, error) {
		return compileLoggers(logs, stderr, path)
	}
}

func tcpAccessLogs(stderr io.Writer) func(p *tcpv3.TcpProxy, path string) (tcpproxy.Observer, error) {
	return func(p *tcpv3.TcpProxy, path string) (tcpproxy.Observer, error) {
		return compileLoggers(p.GetAccessLog(), stderr, path)
	}
}
