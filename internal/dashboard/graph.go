package dashboard

import (
	"math"
	"sort"

	"github.com/trellis-mesh/trellis/internal/registry"
)

// Node kinds.
const (
	KindWorkload = "workload"
	KindService  = "service"
	KindGateway  = "gateway"
	KindUnknown  = "unknown" // callers without a sidecar
)

// Node is a workload, service or gateway in the graph.
type Node struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	App       string `json:"app,omitempty"`
	Version   string `json:"version,omitempty"`
	// Host is a service node's hostname.
	Host string `json:"host,omitempty"`
	// Sync is the xDS state of the workload's proxy (SYNCED, STALE,
	// NACKED), empty when none is connected.
	Sync string `json:"sync,omitempty"`
}

// Edge is traffic from one node to another over the window.
type Edge struct {
	ID     string  `json:"id"`
	Source string  `json:"source"`
	Target string  `json:"target"`
	RPS    float64 `json:"rps"`
	// ErrorRate is the share of 5xx answers (0..1).
	ErrorRate float64 `json:"errorRate"`
	// P99 is the 99th percentile duration in milliseconds; nil when
	// unknown.
	P99 *float64 `json:"p99,omitempty"`
	// MTLS is true when the destination's proxy saw the calls arrive over
	// mutual TLS.
	MTLS     bool   `json:"mtls"`
	Protocol string `json:"protocol,omitempty"`
	// Reporter says whose metrics the numbers are: "source" or
	// "destination"; empty for an edge known from the registry only (a
	// service's endpoint without traffic).
	Reporter string `json:"reporter,omitempty"`
}

// Graph is the service graph.
type Graph struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

func workloadID(ns, name string) string { return "workload/" + ns + "/" + name }
func serviceID(host string) string      { return "service/" + host }

const (
	unknownID     = "unknown"             // callers without a sidecar
	unknownDestID = "unknown-destination" // calls no service was named for
)

// edgeAcc adds up the series of one edge as one reporter saw them.
type edgeAcc struct {
	rate, errRate, mtlsRate, plainRate float64
	dur                                []Bucket
	protocol                           string
}

func (a *edgeAcc) add(s Series) {
	a.rate += s.Rate
	if s.ServerError() {
		a.errRate += s.Rate
	}
	switch s.Security {
	case "mutual_tls":
		a.mtlsRate += s.Rate
	case "none":
		a.plainRate += s.Rate
	}
	a.dur = addBuckets(a.dur, s.Duration)
	if a.protocol == "" {
		a.protocol = s.Protocol
	}
}

type edgeKey struct{ from, to string }

// BuildGraph turns the window's traffic into the service graph: nodes for
// every service in the registry, every connected proxy's workload and every
// caller and callee the metrics name; an edge workload -> service for each
// caller (the caller's proxy's numbers, what the caller experienced, else
// the destination's) and service -> workload for each callee (the
// destination proxy's numbers, else the caller's), plus idle
// service -> workload edges for registry endpoints without traffic.
func BuildGraph(series []Series, proxies []Proxy, reg *registry.Snapshot) Graph {
	nodes := map[string]*Node{}
	addNode := func(n Node) *Node {
		if old := nodes[n.ID]; old != nil {
			if old.App == "" {
				old.App = n.App
			}
			if old.Version == "" {
				old.Version = n.Version
			}
			if n.Kind == KindGateway {
				old.Kind = KindGateway
			}
			return old
		}
		nodes[n.ID] = &n
		return &n
	}
	services := map[string]*registry.Service{}
	if reg != nil {
		for _, s := range reg.Services {
			services[s.Hostname] = s
			addNode(Node{ID: serviceID(s.Hostname), Kind: KindService, Name: s.Name, Namespace: s.Namespace, Host: s.Hostname})
		}
	}
	for _, p := range proxies {
		name := p.workloadName()
		if name == "" {
			continue
		}
		kind := KindWorkload
		if p.Type == "router" {
			kind = KindGateway
		}
		n := addNode(Node{ID: workloadID(p.Namespace, name), Kind: kind, Name: name, Namespace: p.Namespace,
			App: firstLabel(p.Labels, "app", "service.istio.io/canonical-name", "service"), Version: p.Labels["version"]})
		n.Sync = ProxySync(p.Status)
	}
	wlNode := func(name, ns, app, version string) string {
		if name == "" || name == "unknown" {
			return unknownID
		}
		return addNode(Node{ID: workloadID(ns, name), Kind: KindWorkload, Name: name, Namespace: ns, App: known(app), Version: known(version)}).ID
	}
	svcNode := func(host string) string {
		if s := services[host]; s != nil {
			return serviceID(host)
		}
		return addNode(Node{ID: serviceID(host), Kind: KindService, Name: host, Host: host}).ID
	}

	// accs[reporter][edge]
	accs := map[string]map[edgeKey]*edgeAcc{"source": {}, "destination": {}}
	acc := func(rep string, k edgeKey) *edgeAcc {
		m := accs[rep]
		if m == nil {
			return nil
		}
		a := m[k]
		if a == nil {
			a = &edgeAcc{}
			m[k] = a
		}
		return a
	}
	for _, s := range series {
		from := wlNode(s.SourceWorkload, s.SourceNamespace, s.SourceApp, s.SourceVersion)
		var svc string
		switch {
		case s.DestinationService != "" && s.DestinationService != "unknown":
			svc = svcNode(s.DestinationService)
		case s.Reporter == "source" && from != unknownID:
			// A call the caller's proxy could not attribute to a service
			// (no route, or answered before a cluster was chosen).
			svc = addNode(Node{ID: unknownDestID, Kind: KindUnknown, Name: "unknown destination"}).ID
		default:
			continue
		}
		if from == unknownID {
			addNode(Node{ID: unknownID, Kind: KindUnknown, Name: "unknown"})
		}
		if a := acc(s.Reporter, edgeKey{from, svc}); a != nil {
			a.add(s)
		}
		if to := wlNode(s.DestinationWorkload, s.DestinationNamespace, s.DestinationApp, s.DestinationVersion); to != unknownID {
			if a := acc(s.Reporter, edgeKey{svc, to}); a != nil {
				a.add(s)
			}
		}
	}
	var edges []Edge
	seen := map[edgeKey]bool{}
	for _, m := range accs {
		for k := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			toService := nodes[k.to] != nil && (nodes[k.to].Kind == KindService || k.to == unknownDestID)
			// A caller's edge shows what the caller saw; a callee's what
			// arrived there.
			first, second := "destination", "source"
			if toService {
				first, second = "source", "destination"
			}
			rep, a := first, accs[first][k]
			if a == nil {
				rep, a = second, accs[second][k]
			}
			e := Edge{ID: k.from + "->" + k.to, Source: k.from, Target: k.to, RPS: a.rate, Protocol: a.protocol, Reporter: rep}
			if a.rate > 0 {
				e.ErrorRate = a.errRate / a.rate
			}
			if q := Quantile(0.99, a.dur); !math.IsNaN(q) {
				e.P99 = &q
			}
			// mTLS is what the server side saw.
			if d := accs["destination"][k]; d != nil && d.mtlsRate > 0 && d.plainRate == 0 {
				e.MTLS = true
			}
			edges = append(edges, e)
		}
	}
	// Idle endpoints: the service -> workload edges the registry implies.
	if reg != nil {
		for host, eps := range reg.Endpoints {
			for _, ep := range eps {
				if ep.Workload == "" {
					continue
				}
				k := edgeKey{serviceID(host), workloadID(ep.Namespace, ep.Workload)}
				if seen[k] || nodes[k.from] == nil {
					continue
				}
				seen[k] = true
				addNode(Node{ID: k.to, Kind: KindWorkload, Name: ep.Workload, Namespace: ep.Namespace,
					App: firstLabel(ep.Labels, "app", "service"), Version: ep.Labels["version"]})
				edges = append(edges, Edge{ID: k.from + "->" + k.to, Source: k.from, Target: k.to})
			}
		}
	}
	g := Graph{Nodes: make([]Node, 0, len(nodes)), Edges: edges}
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].ID < g.Nodes[j].ID })
	sort.Slice(g.Edges, func(i, j int) bool { return g.Edges[i].ID < g.Edges[j].ID })
	if g.Edges == nil {
		g.Edges = []Edge{}
	}
	return g
}

func known(v string) string {
	if v == "unknown" {
		return ""
	}
	return v
}

func firstLabel(l map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}
