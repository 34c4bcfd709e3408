package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Fetcher keeps the JWKS documents of a set of URIs current. Its methods
// are safe for concurrent use.
type Fetcher struct {
	// Client makes the requests; nil means a client with a 10 s timeout.
	Client *http.Client
	// Refresh is how often a fetched document is fetched again; zero
	// means 20 minutes.
	Refresh time.Duration
	// Retry is the wait after a failed fetch; zero means 30 seconds.
	Retry time.Duration
	// Logf logs fetch failures and recoveries; nil discards them.
	Logf func(format string, args ...any)

	ctx   context.Context
	mu    sync.Mutex
	loops map[string]*loop
	subs  []func()
}

type loop struct {
	stop      context.CancelFunc
	resources []string // the RequestAuthentications naming the URI
	doc       string   // last good document, "" before the first
	err       error    // last fetch's error, nil when it succeeded
}

// New returns a Fetcher whose fetch loops end with ctx.
func New(ctx context.Context) *Fetcher {
	return &Fetcher{ctx: ctx, loops: map[string]*loop{}}
}

// Subscribe registers fn, called (from a fetch goroutine) whenever a
// document changes or a URI's first fetch fails.
func (f *Fetcher) Subscribe(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, fn)
}

// Sync makes the fetched set the keys of uris (URI -> the names of the
// resources naming it, for log messages): new URIs start fetching,
// missing ones stop.
func (f *Fetcher) Sync(uris map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, l := range f.loops {
		if _, ok := uris[u]; !ok {
			l.stop()
			delete(f.loops, u)
		}
	}
	for u, res := range uris {
		if l, ok := f.loops[u]; ok {
			l.resources = res
			continue
		}
		ctx, cancel := context.WithCancel(f.ctx)
		l := &loop{stop: cancel, resources: res}
		f.loops[u] = l
		go f.run(ctx, u, l)
	}
}

// Documents returns the last good document of every URI fetched
// successfully at least once.
func (f *Fetcher) Documents() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]string, len(f.loops))
	for u, l := range f.loops {
		if l.doc != "" {
			out[u] = l.doc
		}
	}
	return out
}

// Failures returns the URIs whose last fetch failed, with the error and
// the resources naming them, sorted by URI.
func (f *Fetcher) Failures() []Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Failure
	for u, l := range f.loops {
		if l.err != nil {
			out = append(out, Failure{URI: u, Resources: l.resources, Err: l.err, Stale: l.doc != ""})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	return out
}

// Failure is a URI whose last fetch failed.
type Failure struct {
	URI       string
	Resources []string
	Err       error
	// Stale reports that an earlier document is still served.
	Stale bool
}

func (f *Fetcher) run(ctx context.Context, uri string, l *loop) {
	refresh, retry := f.Refresh, f.Retry
	if refresh <= 0 {
		refresh = 20 * time.Minute
	}
	if retry <= 0 {
		retry = 30 * time.Second
	}
	for {
		doc, err := f.fetch(ctx, uri)
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		changed := false
		res := strings.Join(l.resources, ", ")
		if err != nil {
			if l.err == nil {
				changed = l.doc == "" // first failure: trellisd logs and keeps refusing
				f.logf("jwks: fetching %s for RequestAuthentication %s failed: %v; tokens of its issuer are refused (401) until a fetch succeeds", uri, res, err)
			}
		} else {
			if l.err != nil {
				f.logf("jwks: fetched %s for RequestAuthentication %s", uri, res)
			}
			changed = doc != l.doc
			l.doc = doc
		}
		l.err = err
		subs := append([]func(){}, f.subs...)
		f.mu.Unlock()
		if changed {
			for _, fn := range subs {
				fn()
			}
		}
		wait := refresh
		if err != nil {
			wait = retry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}

// fetch GETs uri and checks that the body is a JWKS with at least one
// usable key.
func (f *Fetcher) fetch(ctx context.Context, uri string) (string, error) {
	c := f.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return "", fmt.Errorf("not a JWKS: %v", err)
	}
	if len(set.Keys) == 0 {
		return "", fmt.Errorf("not a JWKS: no usable keys")
	}
	for i, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return "", fmt.Errorf("not a JWKS: key %d is not a valid public key", i)
		}
	}
	return string(body), nil
}
