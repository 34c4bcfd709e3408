package server

import (
	"sort"
	"time"
)

// ProxyStatus is one stream's sync state, as /debug/syncz shows it.
type ProxyStatus struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster,omitempty"`
	// ProxyVersion is the node's ISTIO_VERSION metadata, else its
	// user_agent_version.
	ProxyVersion string       `json:"proxyVersion,omitempty"`
	StreamID     int64        `json:"streamId"`
	Delta        bool         `json:"delta"`
	Connected    time.Time    `json:"connected"`
	Types        []TypeStatus `json:"types"`
}

// TypeStatus is the state of one resource type on one stream.
type TypeStatus struct {
	TypeURL      string    `json:"typeUrl"`
	Type         string    `json:"type"` // CDS, EDS, LDS, RDS, SDS or the type URL
	SentVersion  string    `json:"sentVersion,omitempty"`
	SentNonce    string    `json:"sentNonce,omitempty"`
	LastSent     time.Time `json:"lastSent,omitzero"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	AckedNonce   string    `json:"ackedNonce,omitempty"`
	LastAcked    time.Time `json:"lastAcked,omitzero"`
	// Resources is how many resources the last response carried (all of
	// them for state of the world, the changed ones for Delta).
	Resources int   `json:"resources"`
	LastNack  *Nack `json:"lastNack,omitempty"`
}

// Nack is a rejected response.
type Nack struct {
	Time    time.Time `json:"time"`
	Nonce   string    `json:"nonce"`
	Version string    `json:"version,omitempty"` // the version the client kept
	Message string    `json:"message"`
}

// Synced reports whether the last response was ACKed.
func (t TypeStatus) Synced() bool { return t.SentNonce != "" && t.SentNonce == t.AckedNonce }

// Nacked reports whether the last response was rejected.
func (t TypeStatus) Nacked() bool { return t.LastNack != nil && t.LastNack.Nonce == t.SentNonce }

func (c *conn) status() (ProxyStatus, bool) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.nodeSt == nil {
		return ProxyStatus{}, false
	}
	st := ProxyStatus{ID: c.nodeSt.GetId(), Cluster: c.nodeSt.GetCluster(), StreamID: c.id, Delta: c.delta, Connected: c.connected,
		ProxyVersion: c.nodeSt.GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue()}
	if st.ProxyVersion == "" {
		st.ProxyVersion = c.nodeSt.GetUserAgentVersion()
	}
	for _, t := range c.types {
		cp := *t
		if t.LastNack != nil {
			n := *t.LastNack
			cp.LastNack = &n
		}
		st.Types = append(st.Types, cp)
	}
	rank := func(u string) int {
		for i, t := range pushOrder {
			if t == u {
				return i
			}
		}
		return len(pushOrder)
	}
	sort.Slice(st.Types, func(i, j int) bool {
		ri, rj := rank(st.Types[i].TypeURL), rank(st.Types[j].TypeURL)
		if ri != rj {
			return ri < rj
		}
		return st.Types[i].TypeURL < st.Types[j].TypeURL
	})
	return st, true
}
