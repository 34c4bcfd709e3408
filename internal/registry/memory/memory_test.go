package memory

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/trellis-mesh/trellis/internal/registry"
)

func TestRegistry(t *testing.T) {
	var r Registry
	var calls atomic.Int32
	r.Subscribe(func() { calls.Add(1) })
	if n := len(r.Snapshot().Services); n != 0 {
		t.Fatalf("zero value: got %d services, want 0", n)
	}
	r.SetEndpoints("b.default.svc.cluster.local", []*registry.Endpoint{{Address: "10.0.0.1", Port: 80}})
	if got := r.Snapshot().Endpoints["b.default.svc.cluster.local"]; got != nil {
		t.Fatalf("endpoints without a service are visible: %v", got)
	}
	r.SetService(&registry.Service{Hostname: "b.default.svc.cluster.local"})
	r.SetService(&registry.Service{Hostname: "a.default.svc.cluster.local"})
	snap := r.Snapshot()
	if got, want := len(snap.Services), 2; got != want {
		t.Fatalf("got %d services, want %d", got, want)
	}
	if snap.Services[0].Hostname != "a.default.svc.cluster.local" {
		t.Errorf("services not sorted: got %s first", snap.Services[0].Hostname)
	}
	if got := len(snap.Endpoints["b.default.svc.cluster.local"]); got != 1 {
		t.Errorf("got %d endpoints for b, want 1 (set before the service)", got)
	}
	r.DeleteService("b.default.svc.cluster.local")
	if r.Snapshot().Service("b.default.svc.cluster.local") != nil {
		t.Error("deleted service still there")
	}
	if got := len(snap.Services); got != 2 {
		t.Errorf("an earlier snapshot changed: got %d services, want 2", got)
	}
	if got, want := calls.Load(), int32(4); got != want {
		t.Errorf("got %d notifications, want %d", got, want)
	}
	r.Replace(nil)
	if n := len(r.Snapshot().Services); n != 0 {
		t.Errorf("after Replace(nil): got %d services, want 0", n)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := New(nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				r.SetService(&registry.Service{Hostname: string(rune('a'+i)) + ".x"})
			}
		}(i)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_ = r.Snapshot().Service("a.x")
			}
		}()
	}
	wg.Wait()
	if got := len(r.Snapshot().Services); got != 4 {
		t.Errorf("got %d services, want 4", got)
	}
}

// TestSubscribeCallbackMayRead: subscribers run without the lock, so they
// may read the registry (and see the change) without deadlocking.
func TestSubscribeCallbackMayRead(t *testing.T) {
	r := New(nil)
	seen := make(chan int, 1)
	r.Subscribe(func() { seen <- len(r.Snapshot().Services) })
	r.SetService(&registry.Service{Hostname: "a.x"})
	if got := <-seen; got != 1 {
		t.Errorf("callback saw %d services, want 1", got)
	}
}
