package trellisd

import (
	"sync"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/dashboard"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// meshView shows the dashboard what trellisd serves.
type meshView struct {
	s *Server

	mu    sync.Mutex
	nodes map[int64]dashboard.Proxy // identity by stream id, read once per stream
}

func (m *meshView) Config() *config.Snapshot { return m.s.store.Snapshot() }

func (m *meshView) Registry() *registry.Snapshot {
	if st := m.s.gen.state.Load(); st != nil {
		return st.reg
	}
	return nil
}

func (m *meshView) FileIssues() (errs, warns map[string][]string) {
	if m.s.watcher == nil {
		return nil, nil
	}
	return issueStrings(m.s.watcher.Errors()), issueStrings(m.s.watcher.Warnings())
}

// Proxies are the connected proxies; each stream's node is decoded once.
func (m *meshView) Proxies() []dashboard.Proxy {
	status := m.s.ads.Status()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nodes == nil {
		m.nodes = map[int64]dashboard.Proxy{}
	}
	live := make(map[int64]bool, len(status))
	out := make([]dashboard.Proxy, 0, len(status))
	for _, st := range status {
		live[st.StreamID] = true
		p, ok := m.nodes[st.StreamID]
		if !ok || p.ID != st.ID {
			node := m.s.ads.Node(st.ID)
			if node == nil {
				continue // gone since Status
			}
			p = dashboard.Proxy{ID: st.ID}
			if tp, err := translate.ProxyFromNode(node); err == nil {
				p.Type, p.Pod, p.Namespace, p.IPs, p.Labels = string(tp.Type), tp.Name, tp.Namespace, tp.IPs, tp.Labels
			}
			md := node.GetMetadata().GetFields()
			p.Workload = md["WORKLOAD_NAME"].GetStringValue()
			p.StatsAddress = dashboard.StatsAddressFor(md["PROMETHEUS_ADDRESS"].GetStringValue(), p.IPs)
			m.nodes[st.StreamID] = p
		}
		p.Status = st
		out = append(out, p)
	}
	for id := range m.nodes {
		if !live[id] {
			delete(m.nodes, id)
		}
	}
	return out
}
