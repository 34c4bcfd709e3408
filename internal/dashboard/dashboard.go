package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// DefaultAddress is where trellisd serves the dashboard: Kiali's port, on
// loopback only.
const DefaultAddress = "127.0.0.1:20001"

// Options configure the dashboard. Zero values are the documented
// defaults.
type Options struct {
	// Mesh is the control plane's view; required.
	Mesh Mesh
	// DomainSuffix is the cluster domain; empty means "cluster.local".
	DomainSuffix string
	// PrometheusURL, when set, is where request metrics are queried
	// (PromQL over the HTTP API); empty means trellisd scrapes the
	// connected proxies itself.
	PrometheusURL string
	// ScrapeInterval is how often metrics are read; zero means 5s.
	ScrapeInterval time.Duration
	// Window is the span rates are computed over; zero means 30s. With
	// Prometheus it should be at least four of its scrape intervals.
	Window time.Duration
	// ScrapeTimeout bounds one proxy scrape or Prometheus query; zero
	// means 3s.
	ScrapeTimeout time.Duration
	// ScrapeConcurrency is how many proxies are scraped at once; zero
	// means 8.
	ScrapeConcurrency int
	// Logf receives operational messages; nil means log.Printf.
	Logf func(format string, args ...any)
}

// trafficSource gives the window's traffic.
type trafficSource interface {
	Traffic(ctx context.Context) ([]Series, []ScrapeStatus, error)
}

// Dashboard serves the UI and its JSON API. Create it with New, serve
// Handler, and keep Run running for live metrics.
type Dashboard struct {
	opts    Options
	scraper *scraper // nil with Prometheus
	source  trafficSource
	latest  atomic.Pointer[traffic]

	checkMu sync.Mutex
	checked struct { // the last cross-check, by the snapshots it read
		cfg      *config.Snapshot
		reg      *registry.Snapshot
		warnings []validate.Issue
	}
}

// traffic is the last reading of the source.
type traffic struct {
	series  []Series
	scrapes []ScrapeStatus
	err     string
	at      time.Time
}

// New checks the options and returns a dashboard.
func New(o Options) (*Dashboard, error) {
	if o.Mesh == nil {
		return nil, fmt.Errorf("dashboard: Mesh is required")
	}
	if o.DomainSuffix == "" {
		o.DomainSuffix = validate.DefaultDomainSuffix
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 5 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 30 * time.Second
	}
	if o.Window < 2*o.ScrapeInterval {
		return nil, fmt.Errorf("dashboard window %s: shorter than two scrape intervals (%s); rates need two scrapes", o.Window, o.ScrapeInterval)
	}
	if o.ScrapeTimeout <= 0 {
		o.ScrapeTimeout = 3 * time.Second
	}
	if o.ScrapeConcurrency <= 0 {
		o.ScrapeConcurrency = 8
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	d := &Dashboard{opts: o}
	if o.PrometheusURL != "" {
		p, err := newPromSource(o.PrometheusURL, o.Window, o.ScrapeTimeout)
		if err != nil {
			return nil, err
		}
		d.source = p
	} else {
		d.scraper = newScraper(&d.opts)
		d.source = d.scraper
	}
	d.latest.Store(&traffic{})
	return d, nil
}

// Run reads metrics every ScrapeInterval until ctx ends.
func (d *Dashboard) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.ScrapeInterval)
	defer t.Stop()
	for {
		d.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Dashboard) refresh(ctx context.Context) {
	if d.scraper != nil {
		d.scraper.scrapeAll(ctx)
	}
	series, scrapes, err := d.source.Traffic(ctx)
	tr := &traffic{series: series, scrapes: scrapes, at: time.Now()}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		tr.err = err.Error()
		if prev := d.latest.Load(); prev.err != tr.err {
			d.opts.Logf("dashboard: %v", err)
		}
	}
	d.latest.Store(tr)
}

// view builds what the API reads from the mesh and the last metrics.
func (d *Dashboard) view() (*view, *traffic) {
	m := d.opts.Mesh
	tr := d.latest.Load()
	v := &view{cfg: m.Config(), reg: m.Registry(), proxies: m.Proxies(), series: tr.series, suffix: d.opts.DomainSuffix}
	errs, warns := m.FileIssues()
	for f, msgs := range errs {
		for _, msg := range msgs {
			v.issues = append(v.issues, Finding{Severity: "error", Source: f, Message: msg})
		}
	}
	for f, msgs := range warns {
		for _, msg := range msgs {
			v.issues = append(v.issues, Finding{Severity: "warning", Source: f, Message: msg})
		}
	}
	var hosts validate.HostSet
	if v.reg != nil {
		h := validate.Hosts{}
		for _, s := range v.reg.Services {
			h.Add(s.Hostname)
		}
		hosts = h
	}
	// Cross-resource checks over the whole served config (Kubernetes
	// sources have no file watcher to report them); what a file's
	// warnings already say is not repeated.
	for _, i := range d.crossCheck(v.cfg, v.reg, hosts) {
		if reported(warns[sourceFile(i.Source)], i) {
			continue
		}
		v.issues = append(v.issues, Finding{Severity: "warning", Source: i.Source, Resource: i.Resource, Field: i.Field, Message: i.Message})
	}
	return v, tr
}

// crossCheck runs validate's cross-resource checks once per pair of
// config and registry snapshots.
func (d *Dashboard) crossCheck(cfg *config.Snapshot, reg *registry.Snapshot, hosts validate.HostSet) []validate.Issue {
	d.checkMu.Lock()
	defer d.checkMu.Unlock()
	if d.checked.cfg == cfg && d.checked.reg == reg && cfg != nil {
		return d.checked.warnings
	}
	res := validate.SnapshotWithOptions(cfg, hosts, validate.SnapshotOptions{DomainSuffix: d.opts.DomainSuffix})
	d.checked.cfg, d.checked.reg, d.checked.warnings = cfg, reg, res.Warnings
	return res.Warnings
}

// reported says whether a file's warnings already hold the issue.
func reported(msgs []string, i validate.Issue) bool {
	for _, m := range msgs {
		if strings.Contains(m, i.Message) && strings.Contains(m, i.Field) {
			return true
		}
	}
	return false
}

//go:embed all:web/dist
var ui embed.FS

// GraphResponse is the body of /api/graph.
type GraphResponse struct {
	Graph
	// Source is "scrape" (trellisd reads the proxies) or "prometheus".
	Source  string         `json:"source"`
	Window  string         `json:"window"`
	Updated time.Time      `json:"updated,omitzero"`
	Error   string         `json:"error,omitempty"`
	Scrapes []ScrapeStatus `json:"scrapes"`
}

// ProxiesResponse is the body of /api/proxies.
type ProxiesResponse struct {
	Proxies []ProxyRow `json:"proxies"`
}

// Handler serves the UI at / and the API under /api/: graph, services,
// services/{namespace}/{name} and proxies. It answers only requests whose
// Host is an IP address or localhost, so a web page from elsewhere cannot
// reach it through DNS rebinding.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/graph", func(w http.ResponseWriter, r *http.Request) {
		v, tr := d.view()
		resp := GraphResponse{Graph: BuildGraph(v.series, v.proxies, v.reg), Source: "scrape", Window: d.opts.Window.String(),
			Updated: tr.at, Error: tr.err, Scrapes: tr.scrapes}
		if d.opts.PrometheusURL != "" {
			resp.Source = "prometheus"
		}
		if resp.Scrapes == nil {
			resp.Scrapes = []ScrapeStatus{}
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("GET /api/services", func(w http.ResponseWriter, r *http.Request) {
		v, _ := d.view()
		writeJSON(w, v.Summaries())
	})
	mux.HandleFunc("GET /api/services/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, _ := d.view()
		ns, name := r.PathValue("namespace"), r.PathValue("name")
		det := v.Detail(ns, name)
		if det == nil {
			http.Error(w, fmt.Sprintf("no service %s in namespace %s (see /api/services)", name, ns), http.StatusNotFound)
			return
		}
		writeJSON(w, det)
	})
	mux.HandleFunc("GET /api/proxies", func(w http.ResponseWriter, r *http.Request) {
		v, _ := d.view()
		resp := ProxiesResponse{Proxies: []ProxyRow{}}
		for _, p := range v.proxies {
			ip := ""
			if len(p.IPs) > 0 {
				ip = p.IPs[0]
			}
			resp.Proxies = append(resp.Proxies, proxyRow(p, ip))
		}
		writeJSON(w, resp)
	})
	dist, err := fs.Sub(ui, "web/dist")
	if err != nil {
		panic(err) // the embed pattern names web/dist: it is there
	}
	mux.Handle("GET /", http.FileServerFS(dist))
	return localOnly(mux)
}

// localOnly refuses requests whose Host header is a name other than
// localhost.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.Trim(host, "[]")
		if host != "localhost" && net.ParseIP(host) == nil {
			http.Error(w, "the dashboard answers only to an IP address or localhost (Host "+r.Host+")", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
