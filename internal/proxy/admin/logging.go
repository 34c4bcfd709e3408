package admin

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Level is a logger's verbosity, Envoy's names.
type Level int32

// Levels from most to least verbose.
const (
	Trace Level = iota
	Debug
	Info
	Warning
	Error
	Critical
	Off
)

var levelNames = []string{"trace", "debug", "info", "warning", "error", "critical", "off"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "unknown"
}

// ParseLevel reads a level name ("warn" is accepted for warning).
func ParseLevel(s string) (Level, error) {
	s = strings.ToLower(s)
	if s == "warn" {
		return Warning, nil
	}
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown log level %q; use one of %s", s, strings.Join(levelNames, ", "))
}

// Logging holds the proxy's named loggers and their levels. The data path
// checks Enabled (one atomic load) before formatting a log line.
type Logging struct {
	mu      sync.Mutex
	loggers map[string]*atomic.Int32
}

// NewLogging registers loggers at level info.
func NewLogging(names ...string) *Logging {
	l := &Logging{loggers: map[string]*atomic.Int32{}}
	for _, n := range names {
		l.Logger(n)
	}
	return l
}

// Logger returns the level cell of a named logger, creating it at info.
func (l *Logging) Logger(name string) *atomic.Int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.loggers[name]; ok {
		return v
	}
	v := &atomic.Int32{}
	v.Store(int32(Info))
	l.loggers[name] = v
	return v
}

// Enabled reports whether the named logger logs at level.
func (l *Logging) Enabled(name string, level Level) bool {
	return level >= Level(l.Logger(name).Load())
}

// SetAll sets every logger's level.
func (l *Logging) SetAll(level Level) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.loggers {
		v.Store(int32(level))
	}
}

// Set sets one logger's level; unknown names are an error.
func (l *Logging) Set(name string, level Level) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.loggers[name]
	if !ok {
		return fmt.Errorf("unknown logger %q", name)
	}
	v.Store(int32(level))
	return nil
}

// String renders Envoy's "active loggers:" listing.
func (l *Logging) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.loggers))
	for n := range l.loggers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("active loggers:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s: %s\n", n, Level(l.loggers[n].Load()))
	}
	return b.String()
}
