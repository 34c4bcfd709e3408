package dashboard

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// promSource reads the window's traffic from Prometheus: the rate of
// istio_requests_total and of istio_request_duration_milliseconds_bucket,
// summed by the labels a Key keeps.
type promSource struct {
	url     string
	api     promv1.API
	window  time.Duration
	timeout time.Duration
}

func newPromSource(url string, window, timeout time.Duration) (*promSource, error) {
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %q: %w (want a URL like http://127.0.0.1:9090)", url, err)
	}
	return &promSource{url: url, api: promv1.NewAPI(c), window: window, timeout: timeout}, nil
}

// queries are the two PromQL expressions for a window.
func (p *promSource) queries() (requests, buckets string) {
	by := strings.Join(keyLabels, ",")
	w := model.Duration(p.window).String()
	requests = fmt.Sprintf("sum by (%s) (rate(%s[%s]))", by, requestsTotal, w)
	buckets = fmt.Sprintf("sum by (le,%s) (rate(%s_bucket[%s]))", by, requestDuration, w)
	return requests, buckets
}

func (p *promSource) Traffic(ctx context.Context) ([]Series, []ScrapeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rq, bq := p.queries()
	status := []ScrapeStatus{{Proxy: "prometheus", URL: p.url, Last: time.Now()}}
	fail := func(err error) ([]Series, []ScrapeStatus, error) {
		status[0].Error = err.Error()
		return nil, status, err
	}
	rv, _, _, err := p.api.Query(ctx, rq, time.Time{})
	if err != nil {
		return fail(fmt.Errorf("prometheus query %s: %w", rq, err))
	}
	bv, _, _, err := p.api.Query(ctx, bq, time.Time{})
	if err != nil {
		return fail(fmt.Errorf("prometheus query %s: %w", bq, err))
	}
	reqs, ok := rv.(model.Vector)
	if !ok {
		return fail(fmt.Errorf("prometheus answered %s to %s, want a vector", rv.Type(), rq))
	}
	bkts, ok := bv.(model.Vector)
	if !ok {
		return fail(fmt.Errorf("prometheus answered %s to %s, want a vector", bv.Type(), bq))
	}
	byKey := map[Key]*Series{}
	keyOf := func(m model.Metric) Key {
		return keyFrom(func(n string) string { return string(m[model.LabelName(n)]) })
	}
	secs := p.window.Seconds()
	for _, s := range reqs {
		r := float64(s.Value)
		if r <= 0 || math.IsNaN(r) {
			continue
		}
		k := keyOf(s.Metric)
		byKey[k] = &Series{Key: k, Rate: r, Requests: r * secs}
	}
	for _, s := range bkts {
		k := keyOf(s.Metric)
		se := byKey[k]
		if se == nil {
			continue
		}
		le, err := strconv.ParseFloat(string(s.Metric["le"]), 64)
		if err != nil {
			continue
		}
		se.Duration = addBuckets(se.Duration, []Bucket{{Le: le, Count: float64(s.Value)}})
	}
	out := make([]Series, 0, len(byKey))
	for _, s := range byKey {
		out = append(out, *s)
	}
	status[0].Samples = len(out)
	return out, status, nil
}
