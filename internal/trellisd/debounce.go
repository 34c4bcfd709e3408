package trellisd

import (
	"context"
	"sync"
	"time"
)

// debouncer folds bursts of change notifications into one call of fire:
// fire runs once no change arrived for quiet, or at the latest max after the
// first change of the burst. fire receives the time of that first change.
type debouncer struct {
	quiet, max time.Duration
	fire       func(first time.Time)

	mu    sync.Mutex
	first time.Time // zero when nothing is pending
	last  time.Time
	kick  chan struct{}
}

func newDebouncer(quiet, max time.Duration, fire func(first time.Time)) *debouncer {
	return &debouncer{quiet: quiet, max: max, fire: fire, kick: make(chan struct{}, 1)}
}

// changed records a change; it never blocks.
func (d *debouncer) changed() {
	now := time.Now()
	d.mu.Lock()
	if d.first.IsZero() {
		d.first = now
	}
	d.last = now
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// run calls fire for each burst until ctx ends.
func (d *debouncer) run(ctx context.Context) {
	var timer *time.Timer
	var timerC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-d.kick:
		case <-timerC:
		}
		d.mu.Lock()
		first, last := d.first, d.last
		d.mu.Unlock()
		if first.IsZero() {
			timerC = nil
			continue
		}
		now := time.Now()
		due := last.Add(d.quiet)
		if deadline := first.Add(d.max); deadline.Before(due) {
			due = deadline
		}
		if wait := due.Sub(now); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
			continue
		}
		d.mu.Lock()
		first = d.first
		d.first, d.last = time.Time{}, time.Time{}
		d.mu.Unlock()
		timerC = nil
		d.fire(first)
	}
}
