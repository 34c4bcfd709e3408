package proxy

import (
	"context"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/proxy/listener"
)

// defaultWarmTimeout is Envoy's default initial_fetch_timeout: a warming
// listener whose route configurations have not all arrived by then becomes
// active anyway, and requests for the missing routes answer 404 NR.
const defaultWarmTimeout = 15 * time.Second

// warming is one LDS listener version waiting for its RDS route
// configurations, like Envoy's dynamic_warming_listeners. Until it is
// ready or its timer fires, the previous version of the listener (if any)
// keeps serving and a brand-new listener is not bound.
type warming struct {
	l       *listener.Listener
	expired bool
	timer   *time.Timer
}

// missingRoutes returns the RDS route configuration names l references
// that have not arrived yet.
func missingRoutes(l *listener.Listener) []string {
	var out []string
	check := func(c *listener.Chain) {
		if c == nil || c.HTTP == nil || c.HTTP.Routes == nil {
			return
		}
		if c.HTTP.Routes.Load() == nil {
			out = append(out, c.HTTP.Routes.Name)
		}
	}
	for _, c := range l.Chains {
		check(c)
	}
	check(l.Default)
	return out
}

// setListeners records ls as the desired LDS set and activates what is
// ready. Called with p.mu held.
func (p *Proxy) setListeners(ls []*listener.Listener) error {
	prevWarm, prevDesired := p.warm, p.desired
	next := make(map[string]*warming, len(ls))
	var started, stopped []*warming
	for _, l := range ls {
		if w := prevWarm[l.Name]; w != nil && w.l == l {
			next[l.Name] = w
			continue
		}
		if len(missingRoutes(l)) == 0 {
			continue
		}
		w := &warming{l: l}
		next[l.Name] = w
		started = append(started, w)
	}
	for name, w := range prevWarm {
		if next[name] != w {
			stopped = append(stopped, w)
		}
	}
	p.warm, p.desired = next, ls
	if err := p.activate(); err != nil {
		p.warm, p.desired = prevWarm, prevDesired
		return err
	}
	for _, w := range stopped {
		w.timer.Stop()
	}
	for _, w := range started {
		if p.warm[w.l.Name] == w {
			w.timer = time.AfterFunc(p.warmTimeout, func() { p.expire(w) })
		}
	}
	if !p.ldsSeen {
		p.ldsSeen = true
		p.initDeadline.Store(time.Now().Add(p.warmTimeout).UnixNano())
		p.initWarming.Store(len(p.warm) > 0)
	}
	return nil
}

// activate binds the desired listeners that are ready (or whose warming
// timed out) and keeps the previous version of the others. Called with
// p.mu held.
func (p *Proxy) activate() error {
	all := append([]*listener.Listener(nil), p.static...)
	active := make(map[string]*listener.Listener, len(p.desired))
	for _, l := range p.desired {
		if w := p.warm[l.Name]; w != nil {
			if !w.expired && len(missingRoutes(l)) > 0 {
				if old := p.active[l.Name]; old != nil {
					all = append(all, old)
					active[l.Name] = old
				}
				continue
			}
			if w.timer != nil {
				w.timer.Stop()
			}
			delete(p.warm, l.Name)
			if w.expired {
				p.logf("listener %q: initial fetch timeout for route configurations %v; activating anyway", l.Name, missingRoutes(l))
			}
		}
		all = append(all, l)
		active[l.Name] = l
	}
	if err := p.Listeners.Update(context.Background(), all); err != nil {
		return err
	}
	p.active = active
	if len(p.warm) == 0 {
		p.initWarming.Store(false)
	}
	return nil
}

// expire ends w's warming after the initial fetch timeout.
func (p *Proxy) expire(w *warming) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warm[w.l.Name] != w {
		return
	}
	w.expired = true
	if err := p.activate(); err != nil {
		p.logf("listener %q: activate after warming timeout: %v", w.l.Name, err)
	}
}

// routesArrived re-checks warming listeners after an RDS update.
func (p *Proxy) routesArrived() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.warm) == 0 {
		return
	}
	if err := p.activate(); err != nil {
		p.logf("activate warmed listeners: %v", err)
	}
}

// WarmingListeners returns the LDS listeners still warming (for admin
// dumps and tests).
func (p *Proxy) WarmingListeners() []*listener.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*listener.Listener, 0, len(p.warm))
	for _, w := range p.warm {
		out = append(out, w.l)
	}
	return out
}

// warmingState implements admin.XDSDump.Warming.
func (p *Proxy) warmingState(name string) (proto.Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warm[name] == nil {
		return nil, false
	}
	if old := p.active[name]; old != nil && old.Proto != nil {
		return old.Proto, true
	}
	return nil, true
}

// initialized reports whether the proxy has its first full config, what
// /healthz/ready answers: synced is the xDS client's first clusters and
// listeners; then no listener may still warm for its routes and every
// cluster the serving listeners and their routes name must exist and be
// warm (an EDS cluster has its first endpoints), as Envoy's init manager
// warms clusters before listeners. The initial fetch timeout, counted
// from the first listeners, bounds the wait for clusters. Once true it
// stays true: readiness for traffic is about the first config only.
func (p *Proxy) initialized(synced bool) bool {
	if p.initDone.Load() {
		return true
	}
	if !synced || p.initWarming.Load() {
		return false
	}
	if p.XDS != nil {
		if missing := p.unwarmedClusters(); len(missing) > 0 {
			if time.Now().UnixNano() < p.initDeadline.Load() {
				return false
			}
			p.logf("initial fetch timeout for clusters %v; ready without them", missing)
		}
	}
	p.initDone.Store(true)
	return true
}

// unwarmedClusters returns, sorted, the clusters named by the serving
// listeners (tcp_proxy) and by their route configurations that are
// missing or still wait for their endpoints.
func (p *Proxy) unwarmedClusters() []string {
	seen := map[string]bool{}
	var out []string
	check := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		if c := p.Clusters.Get(name); c == nil || !c.Warm() {
			out = append(out, name)
		}
	}
	chain := func(c *listener.Chain) {
		if c == nil {
			return
		}
		if c.TCP != nil {
			for _, n := range c.TCP.ClusterNames() {
				check(n)
			}
		}
		if c.HTTP == nil || c.HTTP.Routes == nil {
			return
		}
		rc := c.HTTP.Routes.Load()
		if rc == nil {
			return
		}
		for _, vh := range rc.Hosts {
			for _, r := range vh.Routes {
				for _, wc := range r.Clusters {
					check(wc.Name)
				}
			}
		}
	}
	for _, l := range p.Listeners.Listeners() {
		for _, c := range l.Chains {
			chain(c)
		}
		chain(l.Default)
	}
	sort.Strings(out)
	return out
}
