package tcpproxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// counts are a connection's bytes in each direction as they flow: rx is
// downstream to upstream, tx upstream to downstream. rxTotal and txTotal,
// when set, are the TCP proxy's stat_prefix totals, added to at once.
type counts struct {
	rx, tx           atomic.Int64
	rxTotal, txTotal *stats.Counter
}

// flusher reports a live connection's bytes to its Meter every interval
// and once more at the close.
type flusher struct {
	mu       sync.Mutex
	m        Meter
	cnt      *counts
	rx, tx   int64 // reported so far
	t        *time.Timer
	interval time.Duration
	closed   bool
}

func (p *Proxy) startFlusher(rec *Record, cnt *counts) *flusher {
	f := &flusher{m: p.Telemetry.Meter(rec), cnt: cnt, interval: p.FlushInterval}
	if f.interval <= 0 {
		f.interval = DefaultFlushInterval
	}
	f.m.Opened()
	f.t = time.AfterFunc(f.interval, f.flush)
	return f
}

// delta returns the bytes not reported yet and marks them reported.
func (f *flusher) delta() (rx, tx uint64) {
	nrx, ntx := f.cnt.rx.Load(), f.cnt.tx.Load()
	rx, tx = uint64(nrx-f.rx), uint64(ntx-f.tx)
	f.rx, f.tx = nrx, ntx
	return rx, tx
}

func (f *flusher) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if rx, tx := f.delta(); rx+tx > 0 {
		f.m.Flush(rx, tx)
	}
	f.t.Reset(f.interval)
}

func (f *flusher) close(rec *Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.t.Stop() // under mu: a running flush cannot re-arm it after this
	rx, tx := f.delta()
	f.m.Closed(rec, rx, tx)
}
