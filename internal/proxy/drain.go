package proxy

import (
	"strings"
	"time"
)

// defaultDrainDuration is Istio's terminationDrainDuration default.
const defaultDrainDuration = 5 * time.Second

// startDrain makes the connection managers in scope close their
// connections gracefully: HTTP/1.1 responses carry "connection: close",
// HTTP/2 responses start a GOAWAY. The listeners keep accepting, so a
// client that reconnects (and, for a sidecar, every outbound request of
// the app) is still served.
func (p *Proxy) startDrain(inboundOnly bool) {
	if inboundOnly {
		p.drainInbound.Store(true)
	} else {
		p.drainAll.Store(true)
	}
}

// drains is httpconn.Manager.Draining.
func (p *Proxy) drains(inbound bool) bool {
	return p.drainAll.Load() || inbound && p.drainInbound.Load()
}

// isSidecar reports whether the node is a sidecar (its id starts with
// "sidecar~"; a bootstrap without a node id counts as one). A sidecar's
// shutdown drains inbound only, since its app keeps calling out while it
// finishes; a gateway drains everything.
func (p *Proxy) isSidecar() bool {
	id := p.Bootstrap.GetNode().GetId()
	return id == "" || strings.HasPrefix(id, "sidecar~")
}

// shutdown is the proxy's answer to SIGTERM (or /quitquitquit), as
// pilot-agent does it: health turns 503, the listeners drain gracefully
// (a sidecar's inbound ones only) but keep accepting for d, then whatever
// is still open is closed.
func (p *Proxy) shutdown(d time.Duration) {
	if d <= 0 {
		d = defaultDrainDuration
	}
	inboundOnly := p.isSidecar()
	p.Admin.SetDraining(true)
	p.startDrain(inboundOnly)
	scope := "all"
	if inboundOnly {
		scope = "inbound"
	}
	p.logf("draining %s listeners for %v", scope, d)
	time.Sleep(d)
	p.Listeners.Close()
	p.Clusters.CloseIdle()
	p.sinks.Close()
}
