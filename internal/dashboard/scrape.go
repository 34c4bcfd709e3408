package dashboard

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The Istio metrics the dashboard reads.
const (
	requestsTotal   = "istio_requests_total"
	requestDuration = "istio_request_duration_milliseconds"
)

// counters is one series' cumulative values at one scrape.
type counters struct {
	requests float64
	duration []Bucket // cumulative counts, sorted by Le, +Inf last
}

// sample is one scrape of one proxy.
type sample struct {
	at     time.Time
	series map[Key]*counters
}

// ParseExposition reads the Istio request metrics out of a Prometheus text
// exposition (a proxy's /stats/prometheus).
func ParseExposition(r io.Reader) (map[Key]*counters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[Key]*counters{}
	get := func(m *dto.Metric) Key {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		return keyFrom(func(n string) string { return labels[n] })
	}
	at := func(k Key) *counters {
		c := out[k]
		if c == nil {
			c = &counters{}
			out[k] = c
		}
		return c
	}
	if f := fams[requestsTotal]; f != nil {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			if m.Counter == nil && m.Untyped != nil {
				v = m.GetUntyped().GetValue()
			}
			at(get(m)).requests += v
		}
	}
	if f := fams[requestDuration]; f != nil {
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			var bs []Bucket
			for _, b := range h.GetBucket() {
				bs = append(bs, Bucket{Le: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
			}
			if len(bs) == 0 || !math.IsInf(bs[len(bs)-1].Le, 1) {
				bs = append(bs, Bucket{Le: math.Inf(1), Count: float64(h.GetSampleCount())})
			}
			c := at(get(m))
			c.duration = addBuckets(c.duration, bs)
		}
	}
	return out, nil
}

// delta turns two scrapes of one proxy into the traffic between them. A
// series whose counter went down was reset (the proxy restarted): its
// whole new value counts. A series absent from old started in between.
func delta(old, cur sample) []Series {
	dt := cur.at.Sub(old.at).Seconds()
	if dt <= 0 {
		return nil
	}
	var out []Series
	for k, c := range cur.series {
		o := old.series[k]
		reqs := c.requests
		var dur []Bucket
		if o != nil && c.requests >= o.requests {
			reqs = c.requests - o.requests
			dur = subBuckets(c.duration, o.duration)
		} else {
			dur = append([]Bucket(nil), c.duration...)
		}
		if reqs <= 0 {
			continue
		}
		for i := range dur {
			dur[i].Count /= dt
		}
		out = append(out, Series{Key: k, Requests: reqs, Rate: reqs / dt, Duration: dur})
	}
	return out
}

// subBuckets is a - b, bucket by bucket (clamped at 0).
func subBuckets(a, b []Bucket) []Bucket {
	out := make([]Bucket, len(a))
	for i, x := range a {
		out[i] = x
		for _, y := range b {
			if y.Le == x.Le {
				out[i].Count = math.Max(0, x.Count-y.Count)
				break
			}
		}
	}
	return out
}

// ScrapeStatus is the last scrape of one proxy.
type ScrapeStatus struct {
	Proxy   string    `json:"proxy"`
	URL     string    `json:"url"`
	Last    time.Time `json:"last,omitzero"`
	Error   string    `json:"error,omitempty"`
	Samples int       `json:"samples"`
}

// scraper polls every connected proxy's Prometheus endpoint and keeps one
// window of scrapes per proxy.
type scraper struct {
	proxies     func() []Proxy
	client      *http.Client
	interval    time.Duration
	window      time.Duration
	concurrency int
	now         func() time.Time

	mu      sync.Mutex
	targets map[string]*target // by proxy id
}

type target struct {
	url     string
	samples []sample // oldest first
	last    time.Time
	err     string
}

func newScraper(o *Options) *scraper {
	return &scraper{
		proxies:     o.Mesh.Proxies,
		client:      &http.Client{Timeout: o.ScrapeTimeout},
		interval:    o.ScrapeInterval,
		window:      o.Window,
		concurrency: o.ScrapeConcurrency,
		now:         time.Now,
		targets:     map[string]*target{},
	}
}

func (s *scraper) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrapeAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scrapeAll scrapes every connected proxy once, at most concurrency at a
// time, and forgets proxies that are gone.
func (s *scraper) scrapeAll(ctx context.Context) {
	proxies := s.proxies()
	live := map[string]bool{}
	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for _, p := range proxies {
		url := p.StatsURL()
		if url == "" {
			continue
		}
		live[p.ID] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			series, err := s.scrape(ctx, url)
			s.record(p.ID, url, series, err)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for id := range s.targets {
		if !live[id] {
			delete(s.targets, id)
		}
	}
	s.mu.Unlock()
}

func (s *scraper) scrape(ctx context.Context, url string) (map[Key]*counters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	series, err := ParseExposition(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return series, nil
}

func (s *scraper) record(id, url string, series map[Key]*counters, err error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[id]
	if t == nil || t.url != url {
		t = &target{url: url}
		s.targets[id] = t
	}
	t.last = now
	if err != nil {
		t.err = err.Error()
		return
	}
	t.err = ""
	t.samples = append(t.samples, sample{at: now, series: series})
	// Keep the newest scrape at or before the window's start as the base.
	cut := now.Add(-s.window)
	drop := 0
	for drop+1 < len(t.samples) && !t.samples[drop+1].at.After(cut) {
		drop++
	}
	t.samples = append(t.samples[:0], t.samples[drop:]...)
}

// Traffic is every proxy's traffic over the window (first to last scrape
// kept), and the scrape state of each proxy.
func (s *scraper) Traffic(context.Context) ([]Series, []ScrapeStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Series
	st := make([]ScrapeStatus, 0, len(s.targets))
	for id, t := range s.targets {
		st = append(st, ScrapeStatus{Proxy: id, URL: t.url, Last: t.last, Error: t.err, Samples: len(t.samples)})
		if len(t.samples) < 2 {
			continue
		}
		out = append(out, delta(t.samples[0], t.samples[len(t.samples)-1])...)
	}
	sort.Slice(st, func(i, j int) bool { return st[i].Proxy < st[j].Proxy })
	return out, st, nil
}
