package trellisd

import (
	"context"
	"testing"
	"time"
)

func TestDebounceFoldsBursts(t *testing.T) {
	fired := make(chan time.Time, 10)
	d := newDebouncer(50*time.Millisecond, time.Hour, func(first time.Time) { fired <- first })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	start := time.Now()
	for i := 0; i < 20; i++ {
		d.changed()
	}
	first := <-fired
	if first.Before(start) {
		t.Errorf("first change: got %v, want after %v", first, start)
	}
	select {
	case <-fired:
		t.Errorf("got a second fire for one burst, want one")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestDebounceIsBounded(t *testing.T) {
	fired := make(chan time.Time, 10)
	// quiet is longer than the changes keep coming; max bounds the delay.
	d := newDebouncer(time.Hour, 100*time.Millisecond, func(first time.Time) { fired <- first })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				d.changed()
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	defer close(stop)
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("a steady stream of changes never fired, want a fire after max")
	}
}
