package lb

import (
	"math"
	"sort"
	"strconv"
)

// ring is Envoy's ketama-style consistent hash ring: each host owns a
// number of points proportional to its weight, hashed from "ADDRESS_i".
type ring struct {
	hashes []uint64
	hosts  []*Host
}

func newRing(hs []*Host, minSize, maxSize uint64) *ring {
	if minSize == 0 {
		minSize = 1024
	}
	if maxSize == 0 {
		maxSize = 8 * 1024 * 1024
	}
	if minSize > maxSize {
		minSize = maxSize
	}
	r := &ring{}
	if len(hs) == 0 {
		return r
	}
	var total, minW float64
	minW = math.MaxFloat64
	for _, h := range hs {
		w := float64(h.weight())
		total += w
		minW = min(minW, w)
	}
	// Scale so the lightest host gets at least one point and the ring has
	// at least minSize points, capped at maxSize.
	scale := math.Min(math.Ceil(minW/total*float64(minSize))*total/minW, float64(maxSize))
	type entry struct {
		hash uint64
		host *Host
	}
	var entries []entry
	target := 0.0
	current := 0.0
	for _, h := range hs {
		target += float64(h.weight()) / total * scale
		for i := 0; current < target; i++ {
			entries = append(entries, entry{Hash(h.Address + "_" + strconv.Itoa(i)), h})
			current++
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hash < entries[j].hash })
	r.hashes = make([]uint64, len(entries))
	r.hosts = make([]*Host, len(entries))
	for i, e := range entries {
		r.hashes[i], r.hosts[i] = e.hash, e.host
	}
	return r
}

func (r *ring) pick(ctx *Context, rnd func() uint64) *Host {
	if len(r.hashes) == 0 {
		return nil
	}
	var h uint64
	if ctx != nil && ctx.HasHash {
		h = ctx.Hash
	} else {
		h = rnd()
	}
	i := sort.Search(len(r.hashes), func(i int) bool { return r.hashes[i] >= h })
	if i == len(r.hashes) {
		i = 0
	}
	return r.hosts[i]
}

// maglev is Google's Maglev lookup table (weighted as Envoy does it): each
// host walks its own permutation of the table slots and claims the next
// free slot whenever its weight allows in that round.
type maglev struct {
	hosts []*Host
	table []uint32 // indices into hosts: half the size of pointers
}

func newMaglev(hs []*Host, size uint64) *maglev {
	if size == 0 {
		size = 65537
	}
	m := &maglev{}
	if len(hs) == 0 {
		return m
	}
	// Sort by address so every proxy builds the same table.
	hs = append([]*Host(nil), hs...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Address < hs[j].Address })
	offsets := make([]uint64, len(hs))
	skips := make([]uint64, len(hs))
	next := make([]uint64, len(hs))
	weights := make([]float64, len(hs))
	targets := make([]float64, len(hs))
	var maxW float64
	for i, h := range hs {
		offsets[i] = Hash(h.Address) % size
		skips[i] = Hash(h.Address+"#skip")%(size-1) + 1
		weights[i] = float64(h.weight())
		maxW = max(maxW, weights[i])
	}
	for i := range weights {
		weights[i] /= maxW
	}
	m.hosts = hs
	m.table = make([]uint32, size)
	taken := make([]bool, size)
	filled := uint64(0)
	for round := 0; filled < size; round++ {
		for i := range hs {
			targets[i] += weights[i]
			if targets[i] < 1 {
				continue
			}
			targets[i]--
			for {
				slot := (offsets[i] + next[i]*skips[i]) % size
				next[i]++
				if !taken[slot] {
					taken[slot] = true
					m.table[slot] = uint32(i)
					filled++
					break
				}
			}
			if filled == size {
				break
			}
		}
	}
	return m
}

func (m *maglev) pick(ctx *Context, rnd func() uint64) *Host {
	if len(m.table) == 0 {
		return nil
	}
	var h uint64
	if ctx != nil && ctx.HasHash {
		h = ctx.Hash
	} else {
		h = rnd()
	}
	return m.hosts[m.table[h%uint64(len(m.table))]]
}
