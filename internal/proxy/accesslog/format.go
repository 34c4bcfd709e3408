package accesslog

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// IstioFormat is Istio's default text format (meshConfig.accessLogFormat
// unset), one line per request.
const IstioFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// Entry is one finished request or connection as the data path saw it.
// Empty strings render as "-" (text) or null (JSON).
type Entry struct {
	Start            time.Time
	Duration         time.Duration
	UpstreamDuration time.Duration // time to the upstream's response head; 0 = none

	Method, Path, OriginalPath, Authority string
	UserAgent, RequestID, ForwardedFor    string
	Protocol                              string // "HTTP/1.1", "HTTP/2"; empty for TCP

	Status                         int // 0 for TCP
	Flags                          string
	Details                        string // RESPONSE_CODE_DETAILS
	ConnectionTerminationDetails   string
	UpstreamTransportFailureReason string
	BytesReceived, BytesSent       int64
	Attempts                       int

	UpstreamHost, UpstreamCluster, UpstreamLocalAddress string
	DownstreamLocalAddress, DownstreamRemoteAddress     string
	RequestedServerName, RouteName                      string
	// MutualTLS: the downstream connection presented a verified client
	// certificate (connection.mtls in filter expressions).
	MutualTLS bool

	// RequestHeader and ResponseHeader look up other headers by lower-case
	// name for %REQ(...)% and %RESP(...)%; nil means none.
	RequestHeader  func(name string) (string, bool)
	ResponseHeader func(name string) (string, bool)
}

// value is one rendered operator: a string, a number, or absent.
type value struct {
	s      string
	n      int64
	isNum  bool
	absent bool
}

type op func(e *Entry) value

type part struct {
	literal string
	op      op
	maxLen  int
}

// Format is a compiled text format string.
type Format struct {
	parts []part
}

// CompileFormat parses an Envoy format string. Unknown commands are an
// error naming the command.
func CompileFormat(s string) (*Format, error) {
	f := &Format{}
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			f.parts = append(f.parts, part{literal: s})
			break
		}
		if i > 0 {
			f.parts = append(f.parts, part{literal: s[:i]})
		}
		s = s[i+1:]
		if strings.HasPrefix(s, "%") { // "%%" is a literal percent
			f.parts = append(f.parts, part{literal: "%"})
			s = s[1:]
			continue
		}
		// The command may carry an argument in parentheses that itself
		// contains '%' (START_TIME(%Y-%m-%d)): skip to its ')' first.
		j := 0
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j < len(s) && s[j] == '(' {
			k := strings.IndexByte(s[j:], ')')
			if k < 0 {
				return nil, fmt.Errorf("%%%s: missing ')'", truncate(s, 30))
			}
			j += k + 1
		}
		k := strings.IndexByte(s[j:], '%')
		if k < 0 {
			return nil, fmt.Errorf("unterminated %%COMMAND%% starting at %q", truncate(s, 30))
		}
		j += k
		cmd := s[:j]
		s = s[j+1:]
		p := part{}
		// Optional ":N" max length right after the closing '%'... Envoy puts
		// it inside: %REQ(X):10%.
		if k := strings.LastIndex(cmd, ":"); k > 0 && strings.HasSuffix(cmd[:k], ")") {
			n, err := strconv.Atoi(cmd[k+1:])
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%%%s%%: max length %q must be a positive integer", cmd, cmd[k+1:])
			}
			p.maxLen = n
			cmd = cmd[:k]
		}
		o, err := compileOp(cmd)
		if err != nil {
			return nil, err
		}
		p.op = o
		f.parts = append(f.parts, p)
	}
	return f, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func str(s string) value {
	if s == "" {
		return value{absent: true}
	}
	return value{s: s}
}

func num(n int64) value { return value{n: n, isNum: true} }

func withoutPort(a string) string {
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}

func compileOp(cmd string) (op, error) {
	name, arg := cmd, ""
	if i := strings.IndexByte(cmd, '('); i >= 0 {
		if !strings.HasSuffix(cmd, ")") {
			return nil, fmt.Errorf("%%%s%%: missing ')'", cmd)
		}
		name, arg = cmd[:i], cmd[i+1:len(cmd)-1]
	}
	switch name {
	case "START_TIME":
		layout := "2006-01-02T15:04:05.000Z"
		if arg != "" {
			layout = strftime(arg)
		}
		return func(e *Entry) value { return str(e.Start.UTC().Format(layout)) }, nil
	case "REQ", "RESP":
		return headerOp(name, arg)
	case "PROTOCOL":
		return func(e *Entry) value { return str(e.Protocol) }, nil
	case "RESPONSE_CODE":
		return func(e *Entry) value { return num(int64(e.Status)) }, nil
	case "RESPONSE_FLAGS":
		return func(e *Entry) value { return str(e.Flags) }, nil
	case "RESPONSE_CODE_DETAILS":
		return func(e *Entry) value { return str(e.Details) }, nil
	case "CONNECTION_TERMINATION_DETAILS":
		return func(e *Entry) value { return str(e.ConnectionTerminationDetails) }, nil
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		return func(e *Entry) value { return str(e.UpstreamTransportFailureReason) }, nil
	case "BYTES_RECEIVED":
		return func(e *Entry) value { return num(e.BytesReceived) }, nil
	case "BYTES_SENT":
		return func(e *Entry) value { return num(e.BytesSent) }, nil
	case "DURATION":
		return func(e *Entry) value { return num(e.Duration.Milliseconds()) }, nil
	case "RESPONSE_DURATION":
		return func(e *Entry) value {
			if e.UpstreamDuration == 0 {
				return value{absent: true}
			}
			return num(e.UpstreamDuration.Milliseconds())
		}, nil
	case "UPSTREAM_HOST":
		return func(e *Entry) value { return str(e.UpstreamHost) }, nil
	case "UPSTREAM_CLUSTER":
		return func(e *Entry) value { return str(e.UpstreamCluster) }, nil
	case "UPSTREAM_LOCAL_ADDRESS":
		return func(e *Entry) value { return str(e.UpstreamLocalAddress) }, nil
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return func(e *Entry) value { return str(e.DownstreamLocalAddress) }, nil
	case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		return func(e *Entry) value { return str(withoutPort(e.DownstreamLocalAddress)) }, nil
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return func(e *Entry) value { return str(e.DownstreamRemoteAddress) }, nil
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		return func(e *Entry) value { return str(withoutPort(e.DownstreamRemoteAddress)) }, nil
	case "REQUESTED_SERVER_NAME":
		return func(e *Entry) value { return str(e.RequestedServerName) }, nil
	case "ROUTE_NAME":
		return func(e *Entry) value { return str(e.RouteName) }, nil
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		return func(e *Entry) value { return num(int64(e.Attempts)) }, nil
	case "METHOD":
		return func(e *Entry) value { return str(e.Method) }, nil
	}
	return nil, fmt.Errorf("%%%s%%: unknown command %q", cmd, name)
}

// headerOp handles %REQ(A?B)% / %RESP(A)%.
func headerOp(kind, arg string) (op, error) {
	if arg == "" {
		return nil, fmt.Errorf("%%%s()%%: needs a header name", kind)
	}
	main, alt, _ := strings.Cut(strings.ToLower(arg), "?")
	get := func(e *Entry, name string) string {
		if kind == "REQ" {
			switch name {
			case ":method":
				return e.Method
			case ":path":
				return e.Path
			case ":authority", "host":
				return e.Authority
			case "user-agent":
				return e.UserAgent
			case "x-request-id":
				return e.RequestID
			case "x-forwarded-for":
				return e.ForwardedFor
			case "x-envoy-original-path":
				if e.OriginalPath != "" {
					return e.OriginalPath
				}
			}
			if e.RequestHeader != nil {
				v, _ := e.RequestHeader(name)
				return v
			}
			return ""
		}
		if name == "x-envoy-upstream-service-time" && e.UpstreamDuration > 0 {
			if e.ResponseHeader != nil {
				if v, ok := e.ResponseHeader(name); ok {
					return v
				}
			}
			return strconv.FormatInt(e.UpstreamDuration.Milliseconds(), 10)
		}
		if e.ResponseHeader != nil {
			v, _ := e.ResponseHeader(name)
			return v
		}
		return ""
	}
	return func(e *Entry) value {
		v := get(e, main)
		if v == "" && alt != "" {
			v = get(e, alt)
		}
		return str(v)
	}, nil
}

// strftime converts the common strftime directives Envoy accepts to a Go
// layout (%Y-%m-%dT%H:%M:%S, %z, %3f/%6f/%9f).
func strftime(f string) string {
	r := strings.NewReplacer("%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04", "%S", "05",
		"%z", "-0700", "%Z", "MST", "%3f", "000", "%6f", "000000", "%9f", "000000000", "%b", "Jan", "%a", "Mon", "%y", "06")
	return r.Replace(f)
}

// AppendText renders the entry into buf.
func (f *Format) AppendText(buf []byte, e *Entry) []byte {
	for _, p := range f.parts {
		if p.op == nil {
			buf = append(buf, p.literal...)
			continue
		}
		v := p.op(e)
		start := len(buf)
		switch {
		case v.absent:
			buf = append(buf, '-')
		case v.isNum:
			buf = strconv.AppendInt(buf, v.n, 10)
		default:
			buf = append(buf, v.s...)
		}
		if p.maxLen > 0 && len(buf)-start > p.maxLen {
			buf = buf[:start+p.maxLen]
		}
	}
	return buf
}

// JSONFormat is a compiled json_format: each key's value is a format
// string; a value that is exactly one command keeps its type (number or
// null), anything else renders as a string.
type JSONFormat struct {
	keys      []string
	formats   []*Format
	nested    []*JSONFormat
	omitEmpty bool
}

// CompileJSON compiles a json_format struct.
func CompileJSON(s *structpb.Struct, omitEmpty bool) (*JSONFormat, error) {
	j := &JSONFormat{omitEmpty: omitEmpty}
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		v := s.GetFields()[k]
		switch {
		case v.GetStructValue() != nil:
			n, err := CompileJSON(v.GetStructValue(), omitEmpty)
			if err != nil {
				return nil, fmt.Errorf("%s.%w", k, err)
			}
			j.keys, j.formats, j.nested = append(j.keys, k), append(j.formats, nil), append(j.nested, n)
		case isString(v):
			f, err := CompileFormat(v.GetStringValue())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			j.keys, j.formats, j.nested = append(j.keys, k), append(j.formats, f), append(j.nested, nil)
		default:
			return nil, fmt.Errorf("%s: json_format values must be strings or objects", k)
		}
	}
	return j, nil
}

func isString(v *structpb.Value) bool {
	_, ok := v.GetKind().(*structpb.Value_StringValue)
	return ok
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// AppendJSON renders the entry as one JSON object (no newline).
func (j *JSONFormat) AppendJSON(buf []byte, e *Entry) []byte {
	buf = append(buf, '{')
	first := true
	for i, k := range j.keys {
		start := len(buf)
		if !first {
			buf = append(buf, ',')
		}
		buf = strconv.AppendQuote(buf, k)
		buf = append(buf, ':')
		if n := j.nested[i]; n != nil {
			buf = n.AppendJSON(buf, e)
			first = false
			continue
		}
		f := j.formats[i]
		if len(f.parts) == 1 && f.parts[0].op != nil {
			v := f.parts[0].op(e)
			switch {
			case v.absent:
				if j.omitEmpty {
					buf = buf[:start]
					continue
				}
				buf = append(buf, "null"...)
			case v.isNum:
				buf = strconv.AppendInt(buf, v.n, 10)
			default:
				s := v.s
				if m := f.parts[0].maxLen; m > 0 && len(s) > m {
					s = s[:m]
				}
				b, _ := json.Marshal(s)
				buf = append(buf, b...)
			}
		} else {
			b, _ := json.Marshal(string(f.AppendText(nil, e)))
			buf = append(buf, b...)
		}
		first = false
	}
	return append(buf, '}')
}
