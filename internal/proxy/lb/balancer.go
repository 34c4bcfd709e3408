package lb

import (
	"math/rand/v2"
	"sort"
	"sync/atomic"
)

// Policy is a cluster's lb_policy.
type Policy int

// The supported policies (envoy.config.cluster.v3.Cluster.LbPolicy).
const (
	RoundRobin Policy = iota
	LeastRequest
	RingHash
	Random
	Maglev
)

// String returns Envoy's name for the policy.
func (p Policy) String() string {
	switch p {
	case LeastRequest:
		return "LEAST_REQUEST"
	case RingHash:
		return "RING_HASH"
	case Random:
		return "RANDOM"
	case Maglev:
		return "MAGLEV"
	}
	return "ROUND_ROBIN"
}

// OverprovisioningFactor is Envoy's default (140%): a priority level keeps
// all its traffic until less than 1/1.4 of its hosts are healthy.
const OverprovisioningFactor = 1.4

// Config configures a Balancer. Zero values mean Envoy's defaults.
type Config struct {
	Policy Policy
	// ChoiceCount is least request's number of random choices (default 2).
	ChoiceCount uint32
	// MinRingSize and MaxRingSize bound the ring hash ring (defaults 1024
	// and 8M).
	MinRingSize, MaxRingSize uint64
	// MaglevTableSize is the maglev lookup table size, a prime (default 65537).
	MaglevTableSize uint64
	// PanicThreshold is the healthy percentage below which the balancer
	// ignores health and uses every host. Nil means Envoy's 50%; 0 disables
	// panic mode (then no healthy host means no host).
	PanicThreshold *float64
	// LocalityWeighted spreads each priority's traffic over localities by
	// their EDS load_balancing_weight × health (locality_weighted_lb_config);
	// hosts of localities without a weight get none. Not used by hashing
	// policies.
	LocalityWeighted bool
	// Rand returns uniformly distributed random numbers; nil uses
	// math/rand/v2's goroutine-safe global source. Tests pass a seeded one
	// (which must be safe for concurrent use if the test picks concurrently).
	Rand func() uint64
}

// Context carries what a pick may depend on. The zero value is a plain pick.
type Context struct {
	// Hash is the request's hash (route hash_policy) for RING_HASH and
	// MAGLEV; used when HasHash is set, otherwise those pick at random.
	Hash    uint64
	HasHash bool
	// Tried are hosts earlier attempts of this request used; with
	// AvoidTried (retry_host_predicate previous_hosts) the balancer
	// re-picks up to MaxHostSelectionAttempts times to avoid them.
	Tried      []*Host
	AvoidTried bool
	// OriginalDst is the connection's original destination "ip:port", used
	// by ORIGINAL_DST clusters (the cluster package handles those).
	OriginalDst string
}

// MaxHostSelectionAttempts bounds re-picks that avoid previously tried
// hosts (Istio configures 5).
const MaxHostSelectionAttempts = 5

// picker selects among one priority level's usable hosts.
type picker interface {
	pick(ctx *Context, rnd func() uint64) *Host
}

type level struct {
	p    picker
	cum  uint32 // cumulative load percentage up to and including this level
	size int
}

type view struct {
	levels []level // only levels with load > 0
	empty  bool
}

// Balancer picks hosts of one cluster. It is safe for concurrent use.
type Balancer struct {
	cfg   Config
	hosts []*Host
	rnd   func() uint64
	view  atomic.Pointer[view]
	rr    []atomic.Uint64 // one round-robin counter per priority, kept across Refresh
}

// New builds a balancer over hosts (which it does not copy; the caller must
// not change the slice afterwards).
func New(cfg Config, hosts []*Host) *Balancer {
	b := &Balancer{cfg: cfg, hosts: hosts, rnd: cfg.Rand}
	if b.rnd == nil {
		b.rnd = rand.Uint64
	}
	maxPri := uint32(0)
	for _, h := range hosts {
		if h.Priority > maxPri {
			maxPri = h.Priority
		}
	}
	b.rr = make([]atomic.Uint64, maxPri+1)
	for i := range b.rr {
		b.rr[i].Store(b.rnd()) // random start so that proxies do not move in lockstep
	}
	b.Refresh()
	return b
}

// Hosts returns every host of the balancer (healthy or not).
func (b *Balancer) Hosts() []*Host { return b.hosts }

// Config returns the balancer's configuration.
func (b *Balancer) Config() Config { return b.cfg }

// HealthyCount returns how many hosts are currently healthy.
func (b *Balancer) HealthyCount() int {
	n := 0
	for _, h := range b.hosts {
		if h.Healthy() {
			n++
		}
	}
	return n
}

// Pick returns a host for one attempt, or nil when no host can be used.
func (b *Balancer) Pick(ctx *Context) *Host {
	v := b.view.Load()
	if v.empty {
		return nil
	}
	var h *Host
	attempts := 1
	if ctx != nil && ctx.AvoidTried && len(ctx.Tried) > 0 {
		attempts = MaxHostSelectionAttempts
	}
	for i := 0; i < attempts; i++ {
		h = v.pick(ctx, b.rnd)
		if h == nil || attempts == 1 || !tried(ctx.Tried, h) {
			return h
		}
		if ctx.HasHash {
			// Envoy rehashes on retry so that a hashing balancer can move on.
			ctx.Hash = ctx.Hash*1099511628211 + uint64(i) + 1
		}
	}
	return h
}

func tried(list []*Host, h *Host) bool {
	for _, t := range list {
		if t == h {
			return true
		}
	}
	return false
}

func (v *view) pick(ctx *Context, rnd func() uint64) *Host {
	if len(v.levels) == 1 {
		return v.levels[0].p.pick(ctx, rnd)
	}
	r := uint32(rnd() % 100)
	if ctx != nil && ctx.HasHash {
		r = uint32(ctx.Hash % 100)
	}
	for _, l := range v.levels {
		if r < l.cum {
			return l.p.pick(ctx, rnd)
		}
	}
	return v.levels[len(v.levels)-1].p.pick(ctx, rnd)
}

func (b *Balancer) panicThreshold() float64 {
	if b.cfg.PanicThreshold == nil {
		return 50
	}
	return *b.cfg.PanicThreshold
}

// Refresh recomputes which hosts are usable after a health change (outlier
// ejection, active health check). It is cheap enough to call on every
// health transition but is not meant for the request path.
func (b *Balancer) Refresh() {
	byPri := make([][]*Host, len(b.rr))
	for _, h := range b.hosts {
		byPri[h.Priority] = append(byPri[h.Priority], h)
	}
	healthy := make([][]*Host, len(byPri))
	health := make([]float64, len(byPri)) // percent after overprovisioning, capped at 100
	var total float64
	totalHosts, totalHealthy := 0, 0
	for p, hs := range byPri {
		for _, h := range hs {
			if h.Healthy() {
				healthy[p] = append(healthy[p], h)
			}
		}
		totalHosts += len(hs)
		totalHealthy += len(healthy[p])
		if len(hs) > 0 {
			health[p] = min(100, OverprovisioningFactor*100*float64(len(healthy[p]))/float64(len(hs)))
		}
		total += health[p]
	}
	v := &view{}
	if totalHosts == 0 {
		v.empty = true
		b.view.Store(v)
		return
	}
	threshold := b.panicThreshold()
	total = min(100, total)
	if totalHealthy == 0 || total < threshold {
		if threshold == 0 { // only reachable with nothing healthy
			v.empty = true
			b.view.Store(v)
			return
		}
		// Panic: spread by the (normalized) health, but over every host of
		// each level; with nothing healthy at all, every host of the first
		// non-empty level.
		if totalHealthy == 0 {
			for p, hs := range byPri {
				if len(hs) > 0 {
					v.levels = []level{{p: b.buildLevel(p, hs, hs), cum: 100, size: len(hs)}}
					break
				}
			}
			b.view.Store(v)
			return
		}
		healthy = byPri
	}
	// Assign load: greedy by priority, normalized when total health < 100.
	var remaining float64 = 100
	var cum float64
	for p := range byPri {
		if health[p] == 0 || remaining <= 0 {
			continue
		}
		var load float64
		if total < 100 {
			load = health[p] * 100 / total
		} else {
			load = min(remaining, health[p])
		}
		remaining -= load
		cum += load
		c := uint32(cum + 0.5)
		if remaining <= 0.0001 {
			c = 100
		}
		v.levels = append(v.levels, level{p: b.buildLevel(p, healthy[p], byPri[p]), cum: c, size: len(healthy[p])})
	}
	if len(v.levels) == 0 {
		v.empty = true
	} else {
		v.levels[len(v.levels)-1].cum = 100
	}
	b.view.Store(v)
}

// buildLevel builds one priority's picker over its usable hosts; with
// locality weighting it first picks a locality by weight × its health.
func (b *Balancer) buildLevel(priority int, usable, all []*Host) picker {
	if !b.cfg.LocalityWeighted || b.cfg.Policy == RingHash || b.cfg.Policy == Maglev {
		return b.build(priority, usable)
	}
	type loc struct {
		usable []*Host
		total  int
		weight uint32
	}
	byLoc := map[Locality]*loc{}
	var order []Locality
	for _, h := range all {
		l := byLoc[h.Locality]
		if l == nil {
			l = &loc{weight: h.LocalityWeight}
			byLoc[h.Locality] = l
			order = append(order, h.Locality)
		}
		l.total++
	}
	for _, h := range usable {
		byLoc[h.Locality].usable = append(byLoc[h.Locality].usable, h)
	}
	lp := &localityPicker{}
	var cum float64
	for _, key := range order {
		l := byLoc[key]
		if len(l.usable) == 0 || l.weight == 0 {
			continue
		}
		health := min(1, OverprovisioningFactor*float64(len(l.usable))/float64(l.total))
		cum += float64(l.weight) * health
		lp.cum = append(lp.cum, cum)
		lp.pickers = append(lp.pickers, b.build(priority, l.usable))
	}
	if len(lp.pickers) == 0 {
		return b.build(priority, usable) // no locality weights: plain pick
	}
	return lp
}

// localityPicker chooses a locality by effective weight, then a host in it.
type localityPicker struct {
	cum     []float64
	pickers []picker
}

func (l *localityPicker) pick(ctx *Context, rnd func() uint64) *Host {
	x := float64(rnd()>>11) / (1 << 53) * l.cum[len(l.cum)-1]
	i := sort.SearchFloat64s(l.cum, x)
	if i < len(l.cum) && l.cum[i] == x {
		i++
	}
	if i >= len(l.pickers) {
		i = len(l.pickers) - 1
	}
	return l.pickers[i].pick(ctx, rnd)
}

func (b *Balancer) build(priority int, hs []*Host) picker {
	switch b.cfg.Policy {
	case Random:
		return newRandom(hs)
	case LeastRequest:
		n := b.cfg.ChoiceCount
		if n < 2 {
			n = 2
		}
		return &leastRequest{random: *newRandom(hs), choices: int(n)}
	case RingHash:
		return newRing(hs, b.cfg.MinRingSize, b.cfg.MaxRingSize)
	case Maglev:
		return newMaglev(hs, b.cfg.MaglevTableSize)
	}
	return newRoundRobin(hs, &b.rr[priority])
}

// roundRobin walks a precomputed smooth weighted schedule: one atomic add
// and a slice index per pick.
type roundRobin struct {
	schedule []*Host
	next     *atomic.Uint64
}

// maxSchedule bounds the precomputed schedule; larger weight sums are
// scaled down (keeping every host at least once).
const maxSchedule = 8192

func newRoundRobin(hs []*Host, counter *atomic.Uint64) *roundRobin {
	if len(hs) == 0 {
		return &roundRobin{next: counter}
	}
	ws := make([]int64, len(hs))
	equal := true
	var sum int64
	for i, h := range hs {
		ws[i] = int64(h.weight())
		if ws[i] != ws[0] {
			equal = false
		}
		sum += ws[i]
	}
	if equal {
		return &roundRobin{schedule: append([]*Host(nil), hs...), next: counter}
	}
	g := ws[0]
	for _, w := range ws {
		g = gcd(g, w)
	}
	sum = 0
	for i := range ws {
		ws[i] /= g
		sum += ws[i]
	}
	if sum > maxSchedule {
		scale := float64(maxSchedule) / float64(sum)
		sum = 0
		for i := range ws {
			ws[i] = max(1, int64(float64(ws[i])*scale))
			sum += ws[i]
		}
	}
	// Smooth weighted round robin: each step every host gains its weight,
	// the largest current value is chosen and loses the total.
	cur := make([]int64, len(ws))
	sched := make([]*Host, 0, sum)
	for n := int64(0); n < sum; n++ {
		best := 0
		for i := range ws {
			cur[i] += ws[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		sched = append(sched, hs[best])
	}
	return &roundRobin{schedule: sched, next: counter}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (r *roundRobin) pick(_ *Context, _ func() uint64) *Host {
	if len(r.schedule) == 0 {
		return nil
	}
	return r.schedule[r.next.Add(1)%uint64(len(r.schedule))]
}

// random picks uniformly, or by weight through a cumulative table.
type random struct {
	hosts []*Host
	cum   []uint64 // nil when all weights are equal
	total uint64
}

func newRandom(hs []*Host) *random {
	r := &random{hosts: hs}
	equal := true
	for _, h := range hs {
		if h.weight() != hs[0].weight() {
			equal = false
		}
	}
	if !equal {
		r.cum = make([]uint64, len(hs))
		for i, h := range hs {
			r.total += uint64(h.weight())
			r.cum[i] = r.total
		}
	}
	return r
}

func (r *random) pick(_ *Context, rnd func() uint64) *Host {
	if len(r.hosts) == 0 {
		return nil
	}
	if r.cum == nil {
		return r.hosts[rnd()%uint64(len(r.hosts))]
	}
	x := rnd() % r.total
	i := sort.Search(len(r.cum), func(i int) bool { return r.cum[i] > x })
	return r.hosts[i]
}

// leastRequest draws `choices` hosts (by weight, so weights already shape
// the draw) and keeps the one with the fewest active requests; ties keep
// the first drawn.
type leastRequest struct {
	random
	choices int
}

func (l *leastRequest) pick(ctx *Context, rnd func() uint64) *Host {
	if len(l.hosts) <= 1 {
		return l.random.pick(ctx, rnd)
	}
	var best *Host
	var bestScore int64
	for i := 0; i < l.choices; i++ {
		h := l.random.pick(ctx, rnd)
		score := h.active.Load()
		if best == nil || score < bestScore {
			best, bestScore = h, score
		}
	}
	return best
}
