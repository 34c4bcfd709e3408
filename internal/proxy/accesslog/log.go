package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"

	"github.com/trellis-mesh/trellis/internal/logexpr"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// Sinks owns the open log destinations, one writer goroutine each, shared
// by every logger that names the same path. Create one per proxy.
type Sinks struct {
	mu      sync.Mutex
	sinks   map[string]*sink
	dropped *stats.Counter
	written *stats.Counter
	// Stdout replaces os.Stdout (tests).
	Stdout io.Writer
}

// NewSinks returns an empty set; st (may be nil) gets access_log.dropped
// and access_log.written counters.
func NewSinks(st *stats.Store) *Sinks {
	if st == nil {
		st = stats.NewStore()
	}
	sc := st.Scope("access_log", "")
	return &Sinks{sinks: map[string]*sink{}, dropped: sc.Counter("dropped"), written: sc.Counter("written")}
}

// QueueSize bounds each sink's pending lines.
const QueueSize = 4096

type sink struct {
	ch   chan []byte
	done chan struct{}
	pool *sync.Pool
	// mu makes Close safe against concurrent writers: writers hold it
	// shared for one non-blocking send; Close takes it to close ch.
	mu     sync.RWMutex
	closed bool
}

func (s *Sinks) open(path string) (*sink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sk, ok := s.sinks[path]; ok {
		return sk, nil
	}
	var w io.Writer
	var closer io.Closer
	switch path {
	case "/dev/stdout", "":
		w = os.Stdout
		if s.Stdout != nil {
			w = s.Stdout
		}
	case "/dev/stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open access log: %w", err)
		}
		w, closer = f, f
	}
	sk := &sink{ch: make(chan []byte, QueueSize), done: make(chan struct{}),
		pool: &sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
	go func() {
		defer close(sk.done)
		bw := bufio.NewWriterSize(w, 64<<10)
		flush := time.NewTicker(time.Second)
		defer flush.Stop()
		for {
			select {
			case line, ok := <-sk.ch:
				if !ok {
					bw.Flush()
					if closer != nil {
						closer.Close()
					}
					return
				}
				bw.Write(line)
				s.written.Inc()
				line = line[:0]
				sk.pool.Put(&line)
				if len(sk.ch) == 0 {
					bw.Flush()
				}
			case <-flush.C:
				bw.Flush()
			}
		}
	}()
	s.sinks[path] = sk
	return sk, nil
}

// Close flushes and closes every sink; loggers must not write afterwards.
func (s *Sinks) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, sk := range s.sinks {
		sk.mu.Lock()
		sk.closed = true
		close(sk.ch)
		sk.mu.Unlock()
		<-sk.done
		delete(s.sinks, p)
	}
}

// Dropped returns how many lines were dropped because a sink was full.
func (s *Sinks) Dropped() uint64 { return s.dropped.Value() }

// Log is one compiled access_log entry.
type Log struct {
	sinks *Sinks
	sink  *sink
	text  *Format
	json  *JSONFormat
	// filter, when set, is the CEL filter expression an entry must pass.
	filter *logexpr.Expr
}

// Write renders the entry and queues it; never blocks. Lines written after
// Sinks.Close are dropped.
func (l *Log) Write(e *Entry) {
	if l.filter != nil {
		a := logexpr.Attrs{Code: e.Status, Method: e.Method, MTLS: e.MutualTLS, Flagged: e.Flags != "" && e.Flags != "-"}
		if !l.filter.Eval(&a) {
			return
		}
	}
	bp := l.sink.pool.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json != nil {
		b = l.json.AppendJSON(b, e)
		b = append(b, '\n')
	} else {
		b = l.text.AppendText(b, e)
	}
	sk := l.sink
	sk.mu.RLock()
	sent := false
	if !sk.closed {
		select {
		case sk.ch <- b:
			sent = true
		default:
		}
	}
	sk.mu.RUnlock()
	if !sent {
		l.sinks.dropped.Inc()
		*bp = b[:0]
		sk.pool.Put(bp)
	}
}

// Logs is every access log of one listener or connection manager.
type Logs []*Log

// Write writes the entry to every log.
func (ls Logs) Write(e *Entry) {
	for _, l := range ls {
		l.Write(e)
	}
}

const (
	fileLoggerName   = "envoy.access_loggers.file"
	stdoutLoggerName = "envoy.access_loggers.stdout"
	stderrLoggerName = "envoy.access_loggers.stderr"
)

// Compile compiles access_log entries (file, stdout and stderr loggers;
// text or JSON formats). path prefixes errors (e.g.
// "listeners[0].filter_chains[0].filters[0].access_log").
func Compile(list []*accesslogv3.AccessLog, path string, sinks *Sinks) (Logs, error) {
	var out Logs
	var errs []error
	for i, al := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		var filter *logexpr.Expr
		if f := al.GetFilter(); f != nil {
			var err error
			if filter, err = compileFilter(f, p+".filter"); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		l, err := compileOne(al, p, sinks)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l.filter = filter
		out = append(out, l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func compileOne(al *accesslogv3.AccessLog, p string, sinks *Sinks) (*Log, error) {
	tc := al.GetTypedConfig()
	if tc == nil {
		return nil, fmt.Errorf("%s.typed_config: must be set", p)
	}
	var dest string
	l := &Log{sinks: sinks}
	var formatErr error
	switch tc.GetTypeUrl() {
	case "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog":
		var fl filev3.FileAccessLog
		if err := tc.UnmarshalTo(&fl); err != nil {
			return nil, fmt.Errorf("%s.typed_config: %w", p, err)
		}
		dest = fl.GetPath()
		if dest == "" {
			return nil, fmt.Errorf("%s.typed_config.path: must be set (use /dev/stdout for standard output)", p)
		}
		switch {
		case fl.GetLogFormat() != nil:
			formatErr = l.compileSubstitution(fl.GetLogFormat())
		case fl.GetFormat() != "":
			l.text, formatErr = CompileFormat(fl.GetFormat())
		case fl.GetJsonFormat() != nil:
			l.json, formatErr = CompileJSON(fl.GetJsonFormat(), false)
		case fl.GetTypedJsonFormat() != nil:
			l.json, formatErr = CompileJSON(fl.GetTypedJsonFormat(), false)
		}
	case "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog":
		var sl streamv3.StdoutAccessLog
		if err := tc.UnmarshalTo(&sl); err != nil {
			return nil, fmt.Errorf("%s.typed_config: %w", p, err)
		}
		dest = "/dev/stdout"
		if sl.GetLogFormat() != nil {
			formatErr = l.compileSubstitution(sl.GetLogFormat())
		}
	case "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog":
		var sl streamv3.StderrAccessLog
		if err := tc.UnmarshalTo(&sl); err != nil {
			return nil, fmt.Errorf("%s.typed_config: %w", p, err)
		}
		dest = "/dev/stderr"
		if sl.GetLogFormat() != nil {
			formatErr = l.compileSubstitution(sl.GetLogFormat())
		}
	default:
		return nil, fmt.Errorf("%s.typed_config: access logger %q is not supported; use %s", p, tc.GetTypeUrl(), fileLoggerName)
	}
	if formatErr != nil {
		return nil, fmt.Errorf("%s: format: %w", p, formatErr)
	}
	if l.text == nil && l.json == nil {
		l.text, _ = CompileFormat(IstioFormat)
	}
	sk, err := sinks.open(dest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	l.sink = sk
	return l, nil
}

func (l *Log) compileSubstitution(sf *corev3.SubstitutionFormatString) error {
	var err error
	if len(sf.GetFormatters()) > 0 {
		return errors.New("log_format.formatters: custom formatters are not supported")
	}
	switch {
	case sf.GetJsonFormat() != nil:
		l.json, err = CompileJSON(sf.GetJsonFormat(), sf.GetOmitEmptyValues())
	case sf.GetTextFormatSource() != nil:
		src := sf.GetTextFormatSource()
		if src.GetInlineString() == "" && src.GetInlineBytes() == nil {
			return errors.New("log_format.text_format_source: only inline_string and inline_bytes are supported")
		}
		t := src.GetInlineString()
		if t == "" {
			t = string(src.GetInlineBytes())
		}
		l.text, err = CompileFormat(t)
	case sf.GetTextFormat() != "":
		l.text, err = CompileFormat(sf.GetTextFormat())
	}
	return err
}

const celFilterName = "envoy.access_loggers.extension_filters.cel"

// compileFilter compiles an access log filter: only Envoy's CEL extension
// filter, with the expressions package logexpr supports (what Istio's
// Telemetry accessLogging filter.expression becomes).
func compileFilter(f *accesslogv3.AccessLogFilter, p string) (*logexpr.Expr, error) {
	ef := f.GetExtensionFilter()
	if ef == nil {
		return nil, fmt.Errorf("%s: only extension_filter %s is supported", p, celFilterName)
	}
	var cel celv3.ExpressionFilter
	if err := ef.GetTypedConfig().UnmarshalTo(&cel); err != nil {
		return nil, fmt.Errorf("%s.extension_filter.typed_config: want envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter: %w", p, err)
	}
	if cel.GetCelConfig() != nil {
		return nil, fmt.Errorf("%s.extension_filter.typed_config.cel_config: not supported; remove it", p)
	}
	e, err := logexpr.Parse(cel.GetExpression())
	if err != nil {
		return nil, fmt.Errorf("%s.extension_filter.typed_config.expression: %w", p, err)
	}
	return e, nil
}
