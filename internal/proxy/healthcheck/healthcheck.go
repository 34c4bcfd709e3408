package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

// StatusRange is a half-open range [Start, End) of acceptable HTTP statuses.
type StatusRange struct{ Start, End int }

// HTTP configures an HTTP check.
type HTTP struct {
	Host     string // Host header; empty means the cluster name
	Path     string
	Expected []StatusRange // empty means [200, 201)
}

// TCP configures a TCP check. With an empty Send it only connects.
type TCP struct {
	Send    []byte
	Receive [][]byte // each must appear in the response, in order
}

// Config is one compiled envoy.config.core.v3.HealthCheck.
type Config struct {
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold uint32
	HealthyThreshold   uint32
	HTTP               *HTTP
	TCP                *TCP
	// Dial connects to a host as the cluster's data path does (bind
	// source, TLS origination); nil dials plain TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Stats are Envoy's cluster.NAME.health_check.* counters.
type Stats struct {
	Attempt, Success, Failure, NetworkFailure *stats.Counter
	Healthy                                   *stats.Gauge
}

// NewStats binds the checker's counters in a cluster scope.
func NewStats(sc stats.Scope) *Stats {
	return &Stats{
		Attempt:        sc.Counter("health_check.attempt"),
		Success:        sc.Counter("health_check.success"),
		Failure:        sc.Counter("health_check.failure"),
		NetworkFailure: sc.Counter("health_check.network_failure"),
		Healthy:        sc.Gauge("health_check.healthy"),
	}
}

// Checker checks every host of one cluster. As in Envoy, a host it has not
// checked yet counts as failed (/failed_active_hc) until its first check
// passes; new hosts are checked at once, then every interval, and flip
// after the thresholds.
type Checker struct {
	cfg      Config
	cluster  string
	onChange func()
	st       *Stats
	client   *http.Client

	mu     sync.Mutex
	hosts  []*lb.Host
	counts map[*lb.Host]*streak
	kick   chan struct{}
}

type streak struct {
	ok, bad uint32
	seen    bool // checked at least once
}

// New returns a checker. onChange (may be nil) runs after any host changes
// health.
func New(cluster string, cfg Config, st *Stats, onChange func()) *Checker {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.UnhealthyThreshold == 0 {
		cfg.UnhealthyThreshold = 1
	}
	if cfg.HealthyThreshold == 0 {
		cfg.HealthyThreshold = 1
	}
	if onChange == nil {
		onChange = func() {}
	}
	if st == nil {
		st = NewStats(stats.NewStore().Scope("cluster", cluster))
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if cfg.Dial != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return cfg.Dial(ctx, addr) }
	}
	return &Checker{cfg: cfg, cluster: cluster, onChange: onChange, st: st,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		counts: map[*lb.Host]*streak{}, kick: make(chan struct{}, 1)}
}

// SetHosts replaces the checked hosts.
func (c *Checker) SetHosts(hosts []*lb.Host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hosts = hosts
	counts := make(map[*lb.Host]*streak, len(hosts))
	fresh := false
	for _, h := range hosts {
		if s, ok := c.counts[h]; ok {
			counts[h] = s
		} else {
			counts[h] = &streak{}
			h.SetHealthCheckFailed(true)
			fresh = true
		}
	}
	c.counts = counts
	if fresh {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Run checks every host each interval until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.CheckAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

// CheckAll checks every host once, concurrently, and applies thresholds.
func (c *Checker) CheckAll(ctx context.Context) {
	c.mu.Lock()
	hosts := c.hosts
	c.mu.Unlock()
	results := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.Check(ctx, h.Address)
		}()
	}
	wg.Wait()
	changed := false
	healthy := 0
	c.mu.Lock()
	for i, h := range hosts {
		s := c.counts[h]
		if s == nil {
			continue
		}
		c.st.Attempt.Inc()
		if results[i] == nil {
			c.st.Success.Inc()
			s.ok++
			s.bad = 0
			// The first success of a never-checked host counts at once.
			if (s.ok >= c.cfg.HealthyThreshold || !s.seen) && h.SetHealthCheckFailed(false) {
				changed = true
			}
		} else {
			c.st.Failure.Inc()
			if _, ok := results[i].(netError); ok {
				c.st.NetworkFailure.Inc()
			}
			s.bad++
			s.ok = 0
			if s.bad >= c.cfg.UnhealthyThreshold && h.SetHealthCheckFailed(true) {
				changed = true
			}
		}
		s.seen = true
		if !h.HealthCheckFailed() {
			healthy++
		}
	}
	c.mu.Unlock()
	c.st.Healthy.Set(int64(healthy))
	if changed {
		c.onChange()
	}
}

type netError struct{ err error }

func (e netError) Error() string { return e.err.Error() }
func (e netError) Unwrap() error { return e.err }

// Check runs one check against addr and returns nil when it passes.
func (c *Checker) Check(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if c.cfg.HTTP != nil {
		return c.checkHTTP(ctx, addr)
	}
	return c.checkTCP(ctx, addr)
}

func (c *Checker) checkHTTP(ctx context.Context, addr string) error {
	hc := c.cfg.HTTP
	path := hc.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	req.Host = hc.Host
	if req.Host == "" {
		req.Host = c.cluster
	}
	req.Header.Set("User-Agent", "Envoy/HC")
	resp, err := c.client.Do(req)
	if err != nil {
		return netError{fmt.Errorf("health check %s: %w", addr, err)}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	expected := hc.Expected
	if len(expected) == 0 {
		expected = []StatusRange{{200, 201}}
	}
	for _, r := range expected {
		if resp.StatusCode >= r.Start && resp.StatusCode < r.End {
			return nil
		}
	}
	return fmt.Errorf("health check %s: got status %d, want one of %v", addr, resp.StatusCode, expected)
}

func (c *Checker) checkTCP(ctx context.Context, addr string) error {
	dial := c.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	conn, err := dial(ctx, addr)
	if err != nil {
		return netError{fmt.Errorf("health check %s: %w", addr, err)}
	}
	defer conn.Close()
	tc := c.cfg.TCP
	if tc == nil || len(tc.Send) == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(tc.Send); err != nil {
		return netError{fmt.Errorf("health check %s: write: %w", addr, err)}
	}
	var want int
	for _, r := range tc.Receive {
		want += len(r)
	}
	buf := make([]byte, 0, want)
	tmp := make([]byte, 4096)
	for {
		if matchInOrder(buf, tc.Receive) {
			return nil
		}
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			if matchInOrder(buf, tc.Receive) {
				return nil
			}
			return fmt.Errorf("health check %s: response %q does not contain the expected payload: %w", addr, buf, err)
		}
	}
}

func matchInOrder(buf []byte, parts [][]byte) bool {
	for _, p := range parts {
		i := bytes.Index(buf, p)
		if i < 0 {
			return false
		}
		buf = buf[i+len(p):]
	}
	return true
}
