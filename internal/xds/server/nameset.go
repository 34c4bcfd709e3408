package server

import (
	"hash/fnv"
	"sync"
)

// nameSet is an immutable set of subscribed resource names. Streams that
// subscribe to the same names (every Envoy in a namespace asks for the same
// thousand endpoint names) share one set through a setTable, so
// subscriptions cost memory per distinct set, not per stream.
type nameSet struct {
	m    map[string]struct{}
	hash uint64 // order-independent: XOR of the names' hashes
	refs int    // guarded by the table's mutex
}

func (s *nameSet) has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.m[name]
	return ok
}

// setOrNil is the set's map for ranging over; nil for an empty set.
func (s *nameSet) setOrNil() map[string]struct{} {
	if s == nil {
		return nil
	}
	return s.m
}

func (s *nameSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.m)
}

func nameHash(n string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(n))
	return h.Sum64()
}

// setTable interns name sets, counting references.
type setTable struct {
	mu   sync.Mutex
	sets map[uint64][]*nameSet
}

// intern returns the shared set equal to m (taking a reference), adopting
// m when there is none. m must not be altered afterwards.
func (t *setTable) intern(m map[string]struct{}) *nameSet {
	if len(m) == 0 {
		return nil
	}
	var h uint64
	for n := range m {
		h ^= nameHash(n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sets == nil {
		t.sets = map[uint64][]*nameSet{}
	}
	for _, s := range t.sets[h] {
		if equalSets(s.m, m) {
			s.refs++
			return s
		}
	}
	s := &nameSet{m: m, hash: h, refs: 1}
	t.sets[h] = append(t.sets[h], s)
	return s
}

// release drops a reference; the set leaves the table with its last one.
func (t *setTable) release(s *nameSet) {
	if s == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	list := t.sets[s.hash]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.sets, s.hash)
	} else {
		t.sets[s.hash] = list
	}
}

// count is the number of distinct sets held, for tests.
func (t *setTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.sets {
		n += len(l)
	}
	return n
}

func equalSets(a, b map[string]struct{}) bool {
	if len(a) != len(b) {
		return false
	}
	for n := range a {
		if _, ok := b[n]; !ok {
			return false
		}
	}
	return true
}
