package proxy

import (
	"context"
	"errors"
	"net"
	"sort"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/hotrestart"
	"github.com/trellis-mesh/trellis/internal/version"
)

// Hot restart (Envoy's semantics, package hotrestart): a process started
// with Options.HotRestart.Epoch N > 0 takes the listening sockets of epoch
// N-1 before it binds anything, warms its configuration (xDS, clusters,
// certificates) without accepting, then accepts, serves its admin
// endpoints and tells the parent to drain. The parent closes its listening
// descriptors (the sockets stay open: the child holds them), drains every
// connection (HTTP/1.1 responses close, HTTP/2 connections get GOAWAY),
// and exits when its last connection is gone, at the latest after the
// drain time (what is left is closed) or the parent shutdown time.

// inheritSockets connects to the parent and splits its sockets into the
// admin servers' (by their addresses) and the listeners'.
func (p *Proxy) inheritSockets(ctx context.Context, o Options) error {
	ho := *o.HotRestart
	ch, err := hotrestart.Connect(ctx, ho)
	if errors.Is(err, hotrestart.ErrNoParent) {
		p.logf("hot restart epoch %d: %v; starting fresh", ho.Epoch, err)
		return nil
	}
	if err != nil {
		return err
	}
	socks, err := ch.Listeners()
	if err != nil {
		ch.Close()
		return err
	}
	p.child = ch
	p.adminInherited = map[string]net.Listener{}
	for _, a := range []string{p.adminAddress(), o.ReadyAddress, o.PrometheusAddress, o.MergedAddress} {
		if ln := socks[a]; a != "" && ln != nil {
			p.adminInherited[a] = ln
			delete(socks, a)
		}
	}
	addrs := make([]string, 0, len(socks))
	for a := range socks {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	p.logf("hot restart epoch %d: took %d listener and %d admin sockets from epoch %d (version %s): %v",
		ho.Epoch, len(socks), len(p.adminInherited), ho.Epoch-1, ch.ParentVersion(), addrs)
	p.Listeners.Inherit(socks)
	p.Listeners.HoldAccepting()
	return nil
}

// takeOver runs once the child is initialized: it accepts, and the parent
// drains. The admin servers are already up on the inherited sockets.
func (p *Proxy) takeOver(ctx context.Context, o Options) {
	p.Listeners.StartAccepting()
	if gone := p.Listeners.CloseUnclaimed(); len(gone) > 0 {
		p.logf("hot restart: the configuration has no listener on %v any more; closed", gone)
	}
	ho := o.HotRestart
	if err := p.child.Drain(); err != nil {
		p.logf("%v (the parent may already be gone)", err)
	} else {
		p.logf("hot restart epoch %d: accepting; epoch %d stopped accepting and drains (drain time %v, parent shutdown time %v)",
			ho.Epoch, ho.Epoch-1, ho.DrainTime, ho.ParentShutdownTime)
	}
	go func() {
		if p.child.WaitParentExit(ctx) == nil {
			p.logf("hot restart: epoch %d exited", ho.Epoch-1)
		}
		p.child.Close()
	}()
}

// waitInitialized blocks until the first configuration is in (what makes
// /healthz/ready answer 200) and, with a CA, the workload certificate is
// served (a hot restart's successor must terminate mTLS from its first
// connection), or ctx ends. A certificate that does not come within the
// initial fetch timeout is not waited for longer (as Envoy's warming of
// an SDS secret): the successor then takes over without it, as a fresh
// proxy would serve.
func (p *Proxy) waitInitialized(ctx context.Context, synced func() bool) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	certDeadline := time.Now().Add(p.warmTimeout)
	for {
		if p.initialized(synced()) {
			if p.hasCertificate() {
				return true
			}
			if time.Now().After(certDeadline) {
				p.logf("hot restart: no workload certificate within %v; taking over without it", p.warmTimeout)
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// hasCertificate reports whether the workload certificate is in (true
// without a CA).
func (p *Proxy) hasCertificate() bool {
	if p.Identity == nil {
		return true
	}
	c, _ := p.Identity.Current()
	return c != nil
}

// Sockets is hotrestart.Parent: every listening socket, the admin
// servers' included.
func (p *Proxy) Sockets() []hotrestart.Socket {
	var out []hotrestart.Socket
	for a, ln := range p.Listeners.Sockets() {
		out = append(out, hotrestart.Socket{Address: a, Listener: ln})
	}
	if p.Admin != nil {
		for a, ln := range p.Admin.Sockets() {
			out = append(out, hotrestart.Socket{Address: a, Listener: ln})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// StopAccepting is hotrestart.Parent: the successor took over. Health
// is left as it is: the pod is not going away, its successor answers the
// next probes.
func (p *Proxy) StopAccepting(d hotrestart.Drain) {
	p.handedOver.Store(true)
	p.Listeners.StopAccepting()
	p.Admin.StopAccepting()
	p.startDrain(false)
	p.HTTP.GoAway()
	p.logf("hot restart: epoch %d took over; stopped accepting, draining all listeners", d.ChildEpoch)
	select {
	case p.handover <- d:
	default:
	}
}

// exitAfterHandover drains until the last downstream connection is gone,
// the drain time passed (what is open is closed) or the parent shutdown
// time passed, whichever comes first.
func (p *Proxy) exitAfterHandover(d hotrestart.Drain) {
	drain, shutdown := d.DrainTime, d.ParentShutdownTime
	if drain <= 0 {
		drain = hotrestart.DefaultDrainTime
	}
	if shutdown <= 0 {
		shutdown = hotrestart.DefaultParentShutdownTime
	}
	if shutdown < drain {
		drain = shutdown
	}
	start := time.Now()
	t := time.NewTicker(50 * time.Millisecond)
	for p.Listeners.Conns() > 0 && time.Since(start) < drain {
		<-t.C
	}
	t.Stop()
	left := p.Listeners.Conns()
	p.Listeners.Close()
	p.Clusters.CloseIdle()
	p.sinks.Close()
	p.logf("hot restart: drained in %v (%d connections left and closed); exiting", time.Since(start).Round(time.Millisecond), left)
}

// listenForSuccessor makes this generation reachable by the next one.
func (p *Proxy) listenForSuccessor(o Options) (*hotrestart.Server, error) {
	return hotrestart.Listen(*o.HotRestart, p, version.Version, p.logf)
}
