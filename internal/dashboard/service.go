package dashboard

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// ServiceSummary is one row of the service list.
type ServiceSummary struct {
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Host      string  `json:"host"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
	Endpoints int     `json:"endpoints"`
	Routing   int     `json:"routing"` // VirtualServices and DestinationRules
	Findings  int     `json:"findings"`
	External  bool    `json:"external,omitempty"`
}

// ServiceDetail is everything the dashboard shows about one service.
type ServiceDetail struct {
	ServiceSummary
	Ports            []registry.Port   `json:"ports"`
	VirtualServices  []ConfigObject    `json:"virtualServices"`
	DestinationRules []ConfigObject    `json:"destinationRules"`
	Findings         []Finding         `json:"findings"`
	Split            Split             `json:"split"`
	Proxies          []ProxyRow        `json:"proxies"`
	Errors           []ErrorRow        `json:"errors"`
	Workloads        []WorkloadTraffic `json:"workloads"`
}

// ConfigObject is a VirtualService or DestinationRule that applies to the
// service.
type ConfigObject struct {
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Source    string          `json:"source,omitempty"`
	Spec      json.RawMessage `json:"spec"`
}

// Finding is a validation problem of the service's config.
type Finding struct {
	Severity string `json:"severity"` // "error" or "warning"
	Source   string `json:"source,omitempty"`
	Resource string `json:"resource,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

// Split is the service's traffic split as configured and as measured.
type Split struct {
	// Route names the HTTP route the configured split is read from
	// ("VirtualService ns/name http[i]"); empty without a VirtualService:
	// calls are load-balanced over all endpoints.
	Route      string       `json:"route,omitempty"`
	Configured []SplitShare `json:"configured"`
	Measured   []SplitShare `json:"measured"`
}

// SplitShare is one subset's (or, without subsets, one version's) share.
type SplitShare struct {
	Subset string  `json:"subset"`
	Weight float64 `json:"weight"` // percent
	RPS    float64 `json:"rps,omitempty"`
}

// ProxyRow is one proxy serving the service.
type ProxyRow struct {
	ID       string            `json:"id"`
	Workload string            `json:"workload"`
	IP       string            `json:"ip,omitempty"`
	Sync     string            `json:"sync"`
	Types    map[string]string `json:"types"`
	Nack     string            `json:"nack,omitempty"`
	Version  string            `json:"version,omitempty"`
}

// ErrorRow is a kind of failed call to the service in the window.
type ErrorRow struct {
	Reporter string  `json:"reporter"`
	Source   string  `json:"source"`
	Target   string  `json:"target,omitempty"`
	Code     string  `json:"code"`
	Flags    string  `json:"flags,omitempty"`
	Reason   string  `json:"reason"`
	Requests float64 `json:"requests"`
	RPS      float64 `json:"rps"`
}

// WorkloadTraffic is what one of the service's workloads received.
type WorkloadTraffic struct {
	Workload string  `json:"workload"`
	Version  string  `json:"version,omitempty"`
	Subset   string  `json:"subset,omitempty"`
	RPS      float64 `json:"rps"`
}

// flagReasons says in words what Envoy's response flags mean.
var flagReasons = map[string]string{
	"UH":    "no healthy upstream",
	"UF":    "upstream connection failure",
	"UO":    "upstream overflow (circuit breaker open)",
	"NR":    "no route configured",
	"URX":   "upstream retry limit exceeded",
	"UT":    "upstream request timeout",
	"UC":    "upstream connection termination",
	"UR":    "upstream remote reset",
	"LR":    "connection local reset",
	"DC":    "downstream connection termination",
	"FI":    "fault injected (abort)",
	"DI":    "fault injected (delay)",
	"RL":    "rate limited",
	"UAEX":  "denied by external authorization",
	"RLSE":  "rate limit service error",
	"NC":    "upstream cluster not found",
	"DT":    "max stream duration reached",
	"SI":    "stream idle timeout",
	"DPE":   "downstream protocol error",
	"UPE":   "upstream protocol error",
	"UMSDR": "upstream max stream duration reached",
}

// Reason explains a failed call from its response flags and code.
func Reason(code, flags string) string {
	var parts []string
	for _, f := range strings.Split(flags, ",") {
		if r := flagReasons[f]; r != "" {
			parts = append(parts, r)
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	switch code {
	case "500":
		return "the application answered 500"
	case "502", "503", "504":
		return "the upstream answered " + code
	case "0":
		return "no response (connection closed)"
	}
	return "HTTP " + code
}

// view is what the detail and summaries are built from.
type view struct {
	cfg     *config.Snapshot
	reg     *registry.Snapshot
	proxies []Proxy
	series  []Series
	issues  []Finding // file errors and warnings, cross-resource warnings
	suffix  string
}

// routing returns the VirtualServices and DestinationRules for a host.
func (v *view) routing(svc *registry.Service) (vss, drs []*config.Resource) {
	for _, r := range v.cfg.List(config.KindVirtualService) {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		for _, h := range vs.GetHosts() {
			if hostMatches(validate.FQDN(h, r.Namespace, v.suffix), svc.Hostname) {
				vss = append(vss, r)
				break
			}
		}
	}
	for _, r := range v.cfg.List(config.KindDestinationRule) {
		dr, ok := r.Spec.(*networking.DestinationRule)
		if ok && hostMatches(validate.FQDN(dr.GetHost(), r.Namespace, v.suffix), svc.Hostname) {
			drs = append(drs, r)
		}
	}
	return vss, drs
}

func hostMatches(pattern, host string) bool {
	pattern, host = strings.ToLower(pattern), strings.ToLower(host)
	if pattern == host || pattern == "*" {
		return true
	}
	return strings.HasPrefix(pattern, "*") && strings.HasSuffix(host, pattern[1:])
}

// findings are the issues about the service's config objects, and every
// file rejected outright (it may have held the service's config).
func (v *view) findings(objs []*config.Resource) []Finding {
	sources := map[string]bool{}
	names := map[string]bool{}
	for _, r := range objs {
		sources[sourceFile(r.Source)] = true
		names[r.Display()] = true
	}
	out := []Finding{}
	for _, f := range v.issues {
		if names[f.Resource] || (f.Resource == "" && sources[sourceFile(f.Source)]) || (f.Severity == "error" && f.Resource == "") {
			out = append(out, f)
		}
	}
	return out
}

// sourceFile drops the "#N" document index from a source.
func sourceFile(s string) string {
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		return s[:i]
	}
	return s
}

func (v *view) summary(svc *registry.Service) ServiceSummary {
	s := ServiceSummary{Namespace: svc.Namespace, Name: svc.Name, Host: svc.Hostname, External: svc.MeshExternal}
	if v.reg != nil {
		s.Endpoints = len(v.reg.Endpoints[svc.Hostname])
	}
	vss, drs := v.routing(svc)
	s.Routing = len(vss) + len(drs)
	s.Findings = len(v.findings(append(vss, drs...)))
	var errs float64
	for _, se := range v.series {
		if se.DestinationService == svc.Hostname && se.Reporter == v.inboundReporter(svc) {
			s.RPS += se.Rate
			if se.ServerError() {
				errs += se.Rate
			}
		}
	}
	if s.RPS > 0 {
		s.ErrorRate = errs / s.RPS
	}
	return s
}

// inboundReporter is whose numbers count a service's calls: the callers'
// proxies (they see faults and calls that never arrive), unless no caller
// has a proxy.
func (v *view) inboundReporter(svc *registry.Service) string {
	for _, se := range v.series {
		if se.DestinationService == svc.Hostname && se.Reporter == "source" {
			return "source"
		}
	}
	return "destination"
}

// Summaries lists the services, sorted by namespace and name.
func (v *view) Summaries() []ServiceSummary {
	out := []ServiceSummary{}
	if v.reg == nil {
		return out
	}
	for _, svc := range v.reg.Services {
		out = append(out, v.summary(svc))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Detail describes one service, or nil when the registry has none by that
// namespace and name.
func (v *view) Detail(ns, name string) *ServiceDetail {
	var svc *registry.Service
	if v.reg != nil {
		for _, s := range v.reg.Services {
			if s.Namespace == ns && s.Name == name {
				svc = s
				break
			}
		}
	}
	if svc == nil {
		return nil
	}
	d := &ServiceDetail{ServiceSummary: v.summary(svc), Ports: svc.Ports, VirtualServices: []ConfigObject{}, DestinationRules: []ConfigObject{},
		Proxies: []ProxyRow{}, Errors: []ErrorRow{}, Workloads: []WorkloadTraffic{}}
	vss, drs := v.routing(svc)
	for _, r := range vss {
		d.VirtualServices = append(d.VirtualServices, configObject(r))
	}
	for _, r := range drs {
		d.DestinationRules = append(d.DestinationRules, configObject(r))
	}
	d.Findings = v.findings(append(vss, drs...))
	subsets := subsetLabels(drs)
	d.Split = Split{Configured: []SplitShare{}, Measured: []SplitShare{}}
	d.Split.Route, d.Split.Configured = configuredSplit(vss, svc.Hostname, v.suffix)
	d.Workloads, d.Split.Measured = v.measuredSplit(svc, subsets)
	d.Proxies = v.proxyRows(svc)
	d.Errors = v.errorRows(svc)
	return d
}

func configObject(r *config.Resource) ConfigObject {
	o := ConfigObject{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Source: r.Source}
	if b, err := protojson.Marshal(r.Spec); err == nil {
		o.Spec = b
	} else {
		o.Spec = json.RawMessage(fmt.Sprintf("%q", "render: "+err.Error()))
	}
	return o
}

type subset struct {
	name   string
	labels map[string]string
}

func subsetLabels(drs []*config.Resource) []subset {
	var out []subset
	for _, r := range drs {
		for _, s := range r.Spec.(*networking.DestinationRule).GetSubsets() {
			out = append(out, subset{name: s.GetName(), labels: s.GetLabels()})
		}
	}
	return out
}

// configuredSplit reads the weights of the route that takes calls without
// any particular header or path: the first HTTP route without match
// conditions, else the first route, of the first VirtualService for the
// host.
func configuredSplit(vss []*config.Resource, host, suffix string) (string, []SplitShare) {
	for _, r := range vss {
		vs := r.Spec.(*networking.VirtualService)
		routes := vs.GetHttp()
		if len(routes) == 0 {
			continue
		}
		pick := 0
		for i, h := range routes {
			if len(h.GetMatch()) == 0 {
				pick = i
				break
			}
		}
		h := routes[pick]
		var shares []SplitShare
		total := 0.0
		for _, d := range h.GetRoute() {
			w := float64(d.GetWeight())
			if len(h.GetRoute()) == 1 && w == 0 {
				w = 100
			}
			total += w
			name := d.GetDestination().GetSubset()
			if dh := validate.FQDN(d.GetDestination().GetHost(), r.Namespace, suffix); dh != host {
				name = dh + " " + name
			}
			shares = append(shares, SplitShare{Subset: strings.TrimSpace(name), Weight: w})
		}
		if total > 0 && total != 100 {
			for i := range shares {
				shares[i].Weight = shares[i].Weight * 100 / total
			}
		}
		label := fmt.Sprintf("VirtualService %s/%s http[%d]", r.Namespace, r.Name, pick)
		if n := h.GetName(); n != "" {
			label += " (" + n + ")"
		}
		return label, shares
	}
	return "", []SplitShare{}
}

// measuredSplit is what the service's workloads received in the window,
// grouped by the DestinationRule subset their labels match (by version
// when there is none).
func (v *view) measuredSplit(svc *registry.Service, subsets []subset) ([]WorkloadTraffic, []SplitShare) {
	labels := map[string]map[string]string{} // workload -> labels
	if v.reg != nil {
		for _, ep := range v.reg.Endpoints[svc.Hostname] {
			if ep.Workload != "" {
				labels[ep.Namespace+"/"+ep.Workload] = ep.Labels
			}
		}
	}
	for _, p := range v.proxies {
		if _, ok := labels[p.Namespace+"/"+p.workloadName()]; !ok && len(p.Labels) > 0 {
			labels[p.Namespace+"/"+p.workloadName()] = p.Labels
		}
	}
	// Prefer what the callees' proxies counted; fall back to the callers'.
	rep := "destination"
	has := false
	for _, se := range v.series {
		if se.DestinationService == svc.Hostname && se.Reporter == rep && se.DestinationWorkload != "" && se.DestinationWorkload != "unknown" {
			has = true
			break
		}
	}
	if !has {
		rep = "source"
	}
	byWl := map[string]*WorkloadTraffic{}
	for _, se := range v.series {
		if se.DestinationService != svc.Hostname || se.Reporter != rep || se.DestinationWorkload == "" || se.DestinationWorkload == "unknown" {
			continue
		}
		id := se.DestinationNamespace + "/" + se.DestinationWorkload
		w := byWl[id]
		if w == nil {
			w = &WorkloadTraffic{Workload: se.DestinationWorkload, Version: known(se.DestinationVersion)}
			l := labels[id]
			if l == nil {
				l = map[string]string{"version": se.DestinationVersion, "app": se.DestinationApp}
			}
			for _, s := range subsets {
				if labelsMatch(s.labels, l) {
					w.Subset = s.name
					break
				}
			}
			byWl[id] = w
		}
		w.RPS += se.Rate
	}
	wls := make([]WorkloadTraffic, 0, len(byWl))
	groups := map[string]float64{}
	total := 0.0
	for _, w := range byWl {
		wls = append(wls, *w)
		g := w.Subset
		if g == "" {
			g = w.Version
		}
		if g == "" {
			g = w.Workload
		}
		groups[g] += w.RPS
		total += w.RPS
	}
	sort.Slice(wls, func(i, j int) bool { return wls[i].Workload < wls[j].Workload })
	shares := []SplitShare{}
	for g, r := range groups {
		shares = append(shares, SplitShare{Subset: g, RPS: r, Weight: 100 * r / total})
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].Subset < shares[j].Subset })
	return wls, shares
}

func labelsMatch(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// proxyRows are the proxies at the service's endpoints.
func (v *view) proxyRows(svc *registry.Service) []ProxyRow {
	addrs := map[string]bool{}
	if v.reg != nil {
		for _, ep := range v.reg.Endpoints[svc.Hostname] {
			addrs[ep.Address] = true
		}
	}
	out := []ProxyRow{}
	for _, p := range v.proxies {
		at := ""
		for _, ip := range p.IPs {
			if addrs[ip] {
				at = ip
				break
			}
		}
		if at == "" {
			continue
		}
		out = append(out, proxyRow(p, at))
	}
	return out
}

func proxyRow(p Proxy, ip string) ProxyRow {
	r := ProxyRow{ID: p.ID, Workload: p.workloadName(), IP: ip, Sync: ProxySync(p.Status), Types: map[string]string{}, Version: p.Status.ProxyVersion}
	for _, t := range p.Status.Types {
		r.Types[t.Type] = TypeSync(t)
		if t.Nacked() && r.Nack == "" {
			r.Nack = t.Type + ": " + t.LastNack.Message
		}
	}
	return r
}

// errorRows are the window's failed calls to the service: 5xx answers and
// calls with Envoy response flags, biggest first.
func (v *view) errorRows(svc *registry.Service) []ErrorRow {
	type key struct{ rep, src, dst, code, flags string }
	acc := map[key]*ErrorRow{}
	for _, se := range v.series {
		if se.DestinationService != svc.Hostname {
			continue
		}
		flagged := se.Flags != "" && se.Flags != "-"
		if !se.ServerError() && !flagged {
			continue
		}
		k := key{se.Reporter, se.SourceWorkload, se.DestinationWorkload, se.Code, se.Flags}
		r := acc[k]
		if r == nil {
			r = &ErrorRow{Reporter: se.Reporter, Source: se.SourceWorkload, Target: known(se.DestinationWorkload), Code: se.Code, Reason: Reason(se.Code, se.Flags)}
			if flagged {
				r.Flags = se.Flags
			}
			acc[k] = r
		}
		r.Requests += se.Requests
		r.RPS += se.Rate
	}
	out := []ErrorRow{}
	for _, r := range acc {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].RPS != out[j].RPS {
			return out[i].RPS > out[j].RPS
		}
		return out[i].Source+out[i].Code < out[j].Source+out[j].Code
	})
	return out
}
