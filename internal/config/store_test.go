package config

import (
	"fmt"
	"sync"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func res(kind, ns, name string) *Resource {
	return &Resource{Kind: kind, Meta: Meta{Name: name, Namespace: ns}, Spec: &networking.VirtualService{Hosts: []string{name}}}
}

func keys(s *Snapshot) string {
	var out []string
	for _, r := range s.All() {
		out = append(out, r.Key().String())
	}
	return fmt.Sprint(out)
}

func TestStore(t *testing.T) {
	s := NewStore()
	var got []uint64
	var seen []string
	s.Subscribe(func(snap *Snapshot) {
		got = append(got, snap.Version())
		seen = append(seen, keys(snap))
	})
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"set a", func() {
			s.Set("file:a", []*Resource{res(KindVirtualService, "ns", "x"), res(KindVirtualService, "ns", "y")})
		}, "[VirtualService/ns/x VirtualService/ns/y]"},
		{"set b", func() { s.Set("file:b", []*Resource{res(KindDestinationRule, "ns", "x")}) }, "[DestinationRule/ns/x VirtualService/ns/x VirtualService/ns/y]"},
		{"replace a", func() { s.Set("file:a", []*Resource{res(KindVirtualService, "ns", "z")}) }, "[DestinationRule/ns/x VirtualService/ns/z]"},
		{"delete b", func() { s.Delete("file:b") }, "[VirtualService/ns/z]"},
		{"apply two", func() {
			s.Apply([]Change{{Source: "file:a", Delete: true}, {Source: "file:c", Resources: []*Resource{res(KindGateway, "gw", "g")}}})
		}, "[Gateway/gw/g]"},
		{"set empty removes", func() { s.Set("file:c", nil) }, "[]"},
	}
	for i, st := range steps {
		st.do()
		if got := keys(s.Snapshot()); got != st.want {
			t.Errorf("%s: got %s, want %s", st.name, got, st.want)
		}
		if got, want := s.Version(), uint64(i+1); got != want {
			t.Errorf("%s: got version %d, want %d", st.name, got, want)
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Errorf("subscriber saw versions %v, want [1 2 3 4 5 6]", got)
	}
	if seen[1] != steps[1].want {
		t.Errorf("subscriber saw %s after set b, want %s", seen[1], steps[1].want)
	}
	s.Delete("file:never")
	if got := s.Version(); got != 6 {
		t.Errorf("deleting an unknown source: got version %d, want 6 (no change)", got)
	}
}

func TestStoreLaterSourceWins(t *testing.T) {
	s := NewStore()
	a := res(KindVirtualService, "ns", "x")
	b := res(KindVirtualService, "ns", "x")
	s.Set("file:b", []*Resource{b})
	s.Set("file:a", []*Resource{a})
	if got := s.Snapshot().Get(a.Key()); got != b {
		t.Errorf("got the resource from file:a, want the one from file:b (sources apply in name order)")
	}
}

func TestStoreKube(t *testing.T) {
	s := NewStore()
	svc := &KubeObject{APIVersion: "v1", Kind: "Service", Meta: Meta{Name: "svc", Namespace: "ns"}}
	s.SetAll("file:a", []*Resource{res(KindVirtualService, "ns", "x")}, []*KubeObject{svc})
	if got := s.Snapshot().KubeObjects(); len(got) != 1 || got[0] != svc {
		t.Errorf("got kube objects %v, want the Service", got)
	}
	s.Set("file:a", []*Resource{res(KindVirtualService, "ns", "y")})
	if got := s.Snapshot().KubeObjects(); len(got) != 1 {
		t.Errorf("Set dropped the kube objects: got %v", got)
	}
	if got := s.Sources(); fmt.Sprint(got) != "[file:a]" {
		t.Errorf("got sources %v, want [file:a]", got)
	}
	s.Delete("file:a")
	if got := s.Snapshot(); got.Len() != 0 || len(got.KubeObjects()) != 0 {
		t.Errorf("after delete: got %d resources and %d kube objects, want none", got.Len(), len(got.KubeObjects()))
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := NewStore()
	var mu sync.Mutex
	last := uint64(0)
	ordered := true
	s.Subscribe(func(snap *Snapshot) {
		mu.Lock()
		if snap.Version() <= last {
			ordered = false
		}
		last = snap.Version()
		mu.Unlock()
		_ = s.Snapshot() // reading the store from a subscriber must not deadlock
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				src := fmt.Sprintf("file:%d", g)
				s.Set(src, []*Resource{res(KindVirtualService, "ns", fmt.Sprintf("r%d-%d", g, i))})
				_ = s.Snapshot().All()
			}
		}()
	}
	wg.Wait()
	if !ordered {
		t.Error("subscriber saw versions out of order")
	}
	if last != s.Version() {
		t.Errorf("subscriber last saw version %d, want the final %d", last, s.Version())
	}
	if got, want := s.Version(), uint64(400); got != want {
		t.Errorf("got version %d, want %d", got, want)
	}
	if got, want := s.Snapshot().Len(), 8; got != want {
		t.Errorf("got %d resources, want %d (one per source)", got, want)
	}
}
