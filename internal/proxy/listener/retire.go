package listener

import (
	"context"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// version is the life of one compiled listener config. When LDS replaces
// a listener with a different one (or removes it), the old version
// retires as Envoy drains a listener's old version: its connections,
// including those handed to it from the virtual outbound listener, finish
// the request in hand (HTTP/1.1 answers it with "connection: close") and
// close; what is still open after the drain time is closed.
type version struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// start gives l its version (once, before it serves).
func (l *Listener) start() {
	if l.ver == nil {
		ctx, cancel := context.WithCancel(context.Background())
		l.ver = &version{ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	}
}

// sameConfig reports whether next is the config l already serves, so a
// re-sent but unchanged listener keeps its connections.
func (l *Listener) sameConfig(next *Listener) bool {
	return l.Proto != nil && next.Proto != nil && proto.Equal(l.Proto, next.Proto)
}

// track registers a connection served with l's config; the returned
// context ends with parent or when l retires, and done must be called when
// the connection ends.
func (l *Listener) track(parent context.Context, c net.Conn) (ctx context.Context, done func()) {
	v := l.ver
	if v == nil {
		return parent, func() {}
	}
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(v.ctx, cancel)
	v.mu.Lock()
	v.conns[c] = struct{}{}
	v.mu.Unlock()
	return ctx, func() {
		stop()
		cancel()
		v.mu.Lock()
		delete(v.conns, c)
		v.mu.Unlock()
	}
}

// retire ends l's version and closes its remaining connections after
// drain.
func (l *Listener) retire(drain time.Duration) {
	v := l.ver
	if v == nil || v.ctx.Err() != nil {
		return
	}
	v.cancel()
	time.AfterFunc(drain, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		for c := range v.conns {
			c.Close()
		}
	})
}
