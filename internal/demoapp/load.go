package demoapp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load describes a batch of calls.
type Load struct {
	URL         string      // required
	Calls       int         // zero means 100
	Concurrency int         // zero means 10
	Header      http.Header // added to every request
	// Host, when set, is the request's Host header (calling a proxy's
	// explicit port for a mesh service: "bill-service:9999").
	Host string
	// Timeout per call; zero means 30 s.
	Timeout time.Duration
	// Client; nil means a keep-alive client sized to Concurrency.
	Client *http.Client
}

// Result summarises a batch: who answered how often, and how fast.
type Result struct {
	Calls   int            `json:"calls"`
	Answers map[string]int `json:"answers"` // first line of the body, or "HTTP 500", or "error: ..."
	Status  map[int]int    `json:"status"`  // status code counts; 0 = transport error
	// Latencies in milliseconds.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MinMs float64 `json:"min_ms"`
	MaxMs float64 `json:"max_ms"`
}

// Percent returns the share of calls with this answer, 0-100.
func (r Result) Percent(answer string) float64 {
	if r.Calls == 0 {
		return 0
	}
	return 100 * float64(r.Answers[answer]) / float64(r.Calls)
}

// Run makes the calls and summarises them.
func (l Load) Run(ctx context.Context) (Result, error) {
	if l.URL == "" {
		return Result{}, fmt.Errorf("url: required, e.g. http://bill-service:9999/")
	}
	calls, conc := l.Calls, l.Concurrency
	if calls <= 0 {
		calls = 100
	}
	if conc <= 0 {
		conc = 10
	}
	if conc > calls {
		conc = calls
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	c := l.Client
	if c == nil {
		c = &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}
	}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		res     = Result{Calls: calls, Answers: map[string]int{}, Status: map[int]int{}}
		lat     = make([]time.Duration, 0, calls)
		wg      sync.WaitGroup
		ctxErrs atomic.Int64
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(calls) {
				if ctx.Err() != nil {
					ctxErrs.Add(1)
					continue
				}
				answer, status, d := l.one(ctx, c)
				mu.Lock()
				res.Answers[answer]++
				res.Status[status]++
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load on %s interrupted: %w", l.URL, err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if n := len(lat); n > 0 {
		res.P50ms = ms(lat[(n-1)*50/100])
		res.P99ms = ms(lat[(n-1)*99/100])
		res.MinMs, res.MaxMs = ms(lat[0]), ms(lat[n-1])
	}
	return res, nil
}

func (l Load) one(ctx context.Context, c *http.Client) (answer string, status int, d time.Duration) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL, nil)
	if err != nil {
		return "error: " + err.Error(), 0, 0
	}
	if l.Host != "" {
		req.Host = l.Host
	}
	for k, vs := range l.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return "error: " + shortErr(err), 0, time.Since(start)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	d = time.Since(start)
	if resp.StatusCode >= 400 {
		return fmt.Sprintf("HTTP %d", resp.StatusCode), resp.StatusCode, d
	}
	line, _, _ := strings.Cut(string(body), "\n")
	return strings.TrimSpace(line), resp.StatusCode, d
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 60 {
		return s[i+2:]
	}
	return s
}
